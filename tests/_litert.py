"""LiteRT helpers the tests share: one interpreter factory and one signature call.

``builtin=True`` runs LiteRT's builtin kernels without the default delegates (no XNNPACK): what a
graph needs from the op set, not from a delegate. ``builtin=False`` is the interpreter a device
gets by default (XNNPACK for the float ops it takes), i.e. ``Interpreter(model_content=...)``.
"""
from __future__ import annotations

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

__all__ = ["interpreter", "run", "ops"]


def interpreter(content: bytes, builtin: bool = False, allocate: bool = True) -> Interpreter:
    """An interpreter over the flatbuffer ``content`` (allocated unless ``allocate=False``)."""
    kind = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if builtin else OpResolverType.AUTO
    it = Interpreter(model_content=content, experimental_op_resolver_type=kind)
    if allocate:
        it.allocate_tensors()
    return it


def run(model, builtin: bool = False, signature: str | None = None, dtype=None, **inputs) -> dict:
    """Call a model's signature (the only one unless ``signature`` names it) with ``inputs`` by name.

    ``model`` is flatbuffer bytes or an :class:`Interpreter`. Returns ``{output name: array}``,
    cast to ``dtype`` when given (e.g. ``np.float64`` to compare against a float64 reference).
    """
    it = interpreter(model, builtin) if isinstance(model, (bytes, bytearray)) else model
    out = it.get_signature_runner(signature)(**inputs)
    return {k: (np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype)) for k, v in out.items()}


def ops(model) -> list:
    """The op names of every node, in execution order (``CUSTOM:...`` for a custom / Flex op)."""
    it = interpreter(model, builtin=True, allocate=False) if isinstance(model, (bytes, bytearray)) else model
    return [op["op_name"] for op in it._get_ops_details()]
