"""The registry of training methods behind :func:`tflbayes.fit`.

A method is a function ``train(build_model, x, y, config, **options) -> Posterior`` registered
with its option defaults; ``fit`` validates the user's options against them. A new method is a
new way to *make* a Posterior: register it here and nothing downstream changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

__all__ = ["Method", "METHODS", "register_method", "TrainConfig"]


@dataclass(frozen=True)
class Method:
    name: str
    train: Callable
    defaults: dict
    summary: str
    sampling: bool = False  # SG-MCMC style: report ESS / R-hat


METHODS: dict = {}


def register_method(name: str, defaults: dict, summary: str, sampling: bool = False):
    def deco(fn):
        METHODS[name] = Method(name, fn, dict(defaults), summary, sampling)
        return fn

    return deco


@dataclass
class TrainConfig:
    """Options every method shares (see :func:`tflbayes.fit`).

    ``epochs`` is an integer or ``"auto"`` (:mod:`tflbayes.methods.budget`); ``runs`` collects what
    each automatic-budget training run did, ``warn_state`` makes its ceiling warning appear once.
    """

    epochs: Any = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    validation_data: Optional[tuple] = None
    callbacks: Sequence[Any] = field(default_factory=list)
    verbose: int = 1
    seed: Optional[int] = 0
    strategy: Any = None
    class_names: Optional[Sequence[str]] = None
    runs: list = field(default_factory=list)
    warn_state: dict = field(default_factory=dict)
