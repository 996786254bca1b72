"""Validation of the samplers' options: every bad value raises InvalidInputError naming the option."""
from __future__ import annotations

import math

import numpy as np

from tflbayes._checks import check_choice, check_positive_float, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods.sampling.likelihoods import LIKELIHOODS, check_targets

__all__ = ["total_steps", "check_common", "check_burn_in", "check_thinning", "check_fraction", "auto_chain",
           "auto_cycle_length", "epochs_for", "AUTO_MIN_BURN_IN", "AUTO_MIN_THINNING", "AUTO_MIN_CYCLE"]

#: ``epochs="auto"`` for sgld / sghmc: ``burn_in = max(AUTO_MIN_BURN_IN, thinning × num_samples / 4)``,
#: ``thinning = max(AUTO_MIN_THINNING, steps per epoch)``; the chain runs burn_in + thinning × num_samples steps.
AUTO_MIN_BURN_IN = 1000
AUTO_MIN_THINNING = 50
#: ``epochs="auto"`` for csgmcmc / snapshot: cycles of at least this many optimizer steps (and 4 epochs).
AUTO_MIN_CYCLE = 200


def epochs_for(steps: int, per_epoch: int) -> int:
    """The epochs that give at least ``steps`` optimizer steps."""
    return max(1, int(math.ceil(steps / per_epoch)))


def auto_chain(num_samples: int, per_epoch: int, burn_in=None, thinning=None) -> tuple:
    """``(burn_in, thinning, epochs)`` of ``epochs="auto"``: the chain length follows ``num_samples``.

    ``thinning`` (given or ``max(50, steps per epoch)``) steps between samples, after ``burn_in`` (given or
    ``max(1000, thinning × num_samples / 4)``) steps; ``epochs`` covers ``burn_in + thinning × num_samples``.
    """
    thin = max(AUTO_MIN_THINNING, per_epoch) if thinning is None else check_positive_int("thinning", thinning)
    if burn_in is None:
        burn = max(AUTO_MIN_BURN_IN, thin * num_samples // 4)
    elif isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise InvalidInputError(
            f"Invalid value received for argument `burn_in`. Expected an integer number of optimizer steps >= 0. "
            f"Received: burn_in={burn_in!r}")
    else:
        burn = int(burn_in)
    return burn, thin, epochs_for(burn + thin * num_samples, per_epoch)


def auto_cycle_length(per_epoch: int, samples_per_cycle: int = 1, exploration: float = 0.0,
                      thinning=None) -> int:
    """Cycle length (steps) of ``epochs="auto"`` for the cyclical methods: at least ``AUTO_MIN_CYCLE``
    steps and 4 epochs, with a sampling phase that holds ``samples_per_cycle`` samples 10 steps apart."""
    thin = 10 if thinning is None else int(thinning)
    need = int(math.ceil((thin * max(0, samples_per_cycle - 1) + 1) / max(1e-9, 1.0 - exploration))) + 1
    return max(AUTO_MIN_CYCLE, 4 * per_epoch, need)


def total_steps(num_examples: int, cfg) -> tuple:
    """``(total, steps_per_epoch)``: optimizer steps of ``cfg.epochs`` epochs over ``num_examples``."""
    per_epoch = int(math.ceil(num_examples / cfg.batch_size))
    return cfg.epochs * per_epoch, per_epoch


def _budget(cfg, per_epoch):
    return f"epochs × ceil(N / batch_size) = {cfg.epochs} × {per_epoch} = {cfg.epochs * per_epoch} steps"


def check_fraction(name, value, low_open=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and (
        (0 < value < 1) if low_open else (0 <= value < 1))
    if not ok:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise InvalidInputError(
            f"Invalid value received for argument `{name}`. Expected a number in {interval}. Received: {name}={value!r}"
        )
    return float(value)


def check_common(*, step_size, prior_std, temperature, likelihood, noise_std, num_samples=None,
                 steps_per_execution=1, y=None) -> dict:
    """Check the options every sampler shares; return them as plain JSON data."""
    out = {
        "step_size": check_positive_float("step_size", step_size),
        "prior_std": check_positive_float("prior_std", prior_std),
        "temperature": check_positive_float("temperature", temperature),
        "noise_std": check_positive_float("noise_std", noise_std),
        "steps_per_execution": check_positive_int("steps_per_execution", steps_per_execution),
    }
    check_choice("likelihood", likelihood, LIKELIHOODS)
    out["likelihood"] = likelihood
    if num_samples is not None:
        out["num_samples"] = check_positive_int("num_samples", num_samples)
    if y is not None and likelihood == "regression":
        check_targets(y, len(y))
    return out


def check_burn_in(burn_in, total: int, per_epoch: int, cfg) -> int:
    """``burn_in`` in optimizer steps; None: half of the run."""
    if burn_in is None:
        return total // 2
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or not 0 <= burn_in < total:
        raise InvalidInputError(
            f"Invalid value received for argument `burn_in`. Expected an integer number of optimizer steps in "
            f"[0, {total}) (the run has {_budget(cfg, per_epoch)}). Received: burn_in={burn_in!r}"
        )
    return int(burn_in)


def check_thinning(thinning, num_samples: int, burn_in: int, total: int, per_epoch: int, cfg) -> int:
    """``thinning`` in optimizer steps; None: spread ``num_samples`` evenly over the steps after burn-in."""
    left = total - burn_in
    if thinning is None:
        if left < num_samples:
            raise InvalidInputError(
                f"Invalid value received for argument `num_samples`. Expected at most {left} (the steps left after "
                f"burn_in={burn_in}; the run has {_budget(cfg, per_epoch)}): increase `epochs` (epochs >= "
                f"{epochs_for(burn_in + num_samples, per_epoch)} would work; epochs='auto' sizes the chain to "
                f"num_samples) or lower `num_samples`. Received: num_samples={num_samples!r}"
            )
        return left // num_samples
    thinning = check_positive_int("thinning", thinning)
    if burn_in + thinning * num_samples > total:
        raise InvalidInputError(
            f"Invalid value received for argument `thinning`. burn_in + thinning × num_samples = {burn_in} + "
            f"{thinning} × {num_samples} exceeds the {_budget(cfg, per_epoch)}: increase `epochs` (epochs >= "
            f"{epochs_for(burn_in + thinning * num_samples, per_epoch)} would work) or lower "
            f"`thinning` / `num_samples`. Received: thinning={thinning!r}"
        )
    return thinning
