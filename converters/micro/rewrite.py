"""Flatbuffer rewrites that make a LiteRT graph TFLite Micro-runnable without changing what it computes.

TILE is not in TFLite Micro's op resolver, and the stochastic graph builders tile the deterministic
prefix's features ``[B, ...]`` to the ``S`` samples. Where a TILE only repeats axes of size 1 (the
batch axis of a ``batch_size=1`` graph: ``[1, F] -> [S, F]``), it is exactly a BROADCAST_TO to its
output shape, which TFLite Micro has. :func:`tile_to_broadcast` replaces those ops in place (a new
int32 shape constant per op; tensor indices and signatures unchanged); the conversion then
verifies the rewritten graph against Keras like any other.
"""
from __future__ import annotations

import numpy as np

from tflbayes.errors import ConversionError

__all__ = ["tile_to_broadcast", "align16"]


def _opcode_index(model, schema, code: int) -> int:
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            return i
    oc = schema.OperatorCodeT()
    oc.builtinCode = code
    oc.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    oc.version = 2  # what the TFLite converter writes for BROADCAST_TO (LiteRT refuses version 1)
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _const(model, sub, index: int):
    t = sub.tensors[index]
    buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
    if buf is None or buf.data is None or len(buf.data) == 0:
        return None
    return np.frombuffer(bytes(bytearray(buf.data)), dtype=np.int32 if t.type == 2 else np.int64)


def tile_to_broadcast(blob: bytes, where: str = "graph") -> bytes:
    """``blob`` with every TILE over size-1 axes replaced by BROADCAST_TO (unchanged if it has no TILE).

    Raises:
        ConversionError: a TILE repeats an axis longer than 1 (e.g. a batch of B > 1 inputs tiled S
            times), which BROADCAST_TO cannot express: convert with ``batch_size=1``.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    tile = schema.BuiltinOperator.TILE
    changed = 0
    for sub in model.subgraphs:
        for op in sub.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) != tile:
                continue
            x, mult = sub.tensors[op.inputs[0]], _const(model, sub, op.inputs[1])
            out_shape = [int(d) for d in sub.tensors[op.outputs[0]].shape]
            in_shape = [int(d) for d in x.shape]
            if mult is None or any(m > 1 and d != 1 for m, d in zip(mult.tolist(), in_shape)):
                raise ConversionError(
                    f"{where}: TILE of a [{', '.join(map(str, in_shape))}] tensor by {None if mult is None else mult.tolist()} "
                    "has no TFLite Micro equivalent (TFLite Micro lacks TILE; only size-1 axes broadcast): convert "
                    "stochastic micro bundles with batch_size=1.")
            buf = schema.BufferT()
            buf.data = list(np.array(out_shape, dtype=np.int32).tobytes())
            model.buffers.append(buf)
            shape_t = schema.TensorT()
            shape_t.shape = [len(out_shape)]
            shape_t.type = schema.TensorType.INT32
            shape_t.buffer = len(model.buffers) - 1
            shape_t.name = f"tflbayes/broadcast_shape_{changed}".encode()
            sub.tensors.append(shape_t)
            op.inputs = [op.inputs[0], len(sub.tensors) - 1]
            op.opcodeIndex = _opcode_index(model, schema, schema.BuiltinOperator.BROADCAST_TO)
            op.builtinOptionsType = 0
            op.builtinOptions = None
            changed += 1
    if not changed:
        return blob
    return align16(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def align16(blob: bytes) -> bytes:
    """Repack a flatbuffer so every buffer's data is 16-byte aligned (TFLite Micro's own aligner).

    Python's flatbuffer writer ignores the schema's ``force_align: 16``; a Cortex-M0 faults on an
    unaligned float constant, so rewritten graphs go through TFLite Micro's C++ repacker.
    """
    import tempfile
    from pathlib import Path

    from tflite_micro.tensorflow.lite.micro.tools.tflite_flatbuffer_align_wrapper import align_tflite_model

    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in.tflite", Path(d) / "out.tflite"
        src.write_bytes(blob)
        align_tflite_model(str(src), str(dst))
        return dst.read_bytes()
