"""tf.function -> LiteRT flatbuffer at a chosen precision, refusing Flex ops unless asked; op lists."""
from __future__ import annotations

import re
from typing import Callable, Iterable, Optional

import numpy as np

from tflbayes._keras import tf
from tflbayes.errors import ConversionError

__all__ = ["to_tflite", "op_names", "tensor_report", "FLOAT_PRECISIONS", "INT8_PRECISIONS"]

FLOAT_PRECISIONS = ("float32", "float16", "dynamic")
INT8_PRECISIONS = ("int8", "edgetpu")


def _flex_culprits(message: str) -> str:
    """Pull 'op X at layer Y' facts out of a converter error message."""
    ops = sorted(set(re.findall(r"'(?:tf|tfl)\.(\w+)'", message)))
    locs = sorted(set(re.findall(r'loc\((?:callsite\()?\\?"([^"\\]+)', message)))
    layers = sorted({l.split("/")[1] if l.count("/") >= 1 else l for l in locs if "/" in l})
    parts = []
    if ops:
        parts.append("op(s) " + ", ".join(ops))
    if layers:
        parts.append("in layer(s) " + ", ".join(layers[:8]))
    return " ".join(parts) or message.strip().splitlines()[0][:300]


def to_tflite(fn, trackable, precision: str = "float32",
              representative: Optional[Callable[[], Iterable]] = None,
              allow_flex: bool = False, int8_io: bool = True, sparse: bool = False) -> bytes:
    """Convert a traced ``tf.function`` (one input) to a LiteRT flatbuffer.

    Args:
        fn: a ``tf.function`` with an input signature.
        trackable: the object holding the variables (the Keras model) for the converter.
        precision: ``float32``, ``float16``, ``dynamic`` (int8 weights, float activations),
            ``int8`` or ``edgetpu`` (full-integer with ``representative``).
        representative: a zero-argument generator factory for full-integer calibration.
        allow_flex: permit Select TF (Flex) ops; otherwise they raise :class:`ConversionError`.
        int8_io: int8 input and output tensors (full-integer precisions).
        sparse: store sparse constant weights in LiteRT's sparse tensor format
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``; DENSIFY ops or sparse FULLY_CONNECTED).
    """
    cf = fn.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], trackable)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in INT8_PRECISIONS:
        if representative is None:
            raise ConversionError(f"precision={precision!r} needs representative data for calibration.")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    if sparse:
        conv.optimizations = [*conv.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if allow_flex:
        ops = ops + [tf.lite.OpsSet.SELECT_TF_OPS]
    conv.target_spec.supported_ops = ops
    try:
        blob = conv.convert()
    except Exception as e:  # ConverterError and friends carry the MLIR diagnostics
        msg = str(e)
        if "flex" in msg.lower() or "select tf" in msg.lower() or "not supported" in msg.lower():
            raise ConversionError(
                f"The graph needs ops that are not LiteRT builtins: {_flex_culprits(msg)}. "
                "Replace the layer (e.g. TFP Flipout layers -> tflbayes.layers.VariationalDense) or "
                "pass allow_flex=True to emit Select TF ops (the device then needs the Flex delegate)."
            ) from None
        raise ConversionError(f"LiteRT conversion failed: {msg.strip().splitlines()[0][:500]}") from None
    return blob


def _model(blob: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(blob))


def op_names(blob: bytes) -> list:
    """Sorted unique operator names of a flatbuffer (builtins by name; Flex/custom as 'CUSTOM:name')."""
    from tensorflow.lite.python import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = set()
    model = _model(blob)
    for sub in model.subgraphs:
        for op in sub.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
            if code == schema.BuiltinOperator.CUSTOM:
                cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
                names.add(f"CUSTOM:{cc}")
            else:
                names.add(codes.get(code, str(code)))
    return sorted(names)


def tensor_report(blob: bytes) -> list:
    """Per tensor: name, shape, shape_signature (-1 = dynamic), dtype name, constant (holds weights)."""
    from tensorflow.lite.python import schema_py_generated as schema

    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out = []
    model = _model(blob)
    for sub in model.subgraphs:
        for t in sub.tensors:
            shape = [] if t.shape is None else [int(d) for d in t.shape]
            sig = shape if t.shapeSignature is None else [int(d) for d in t.shapeSignature]
            name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
            buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
            constant = buf is not None and (buf.data is not None and len(buf.data) > 0 or bool(getattr(buf, "size", 0)))
            out.append({"name": name, "shape": shape, "shape_signature": sig,
                        "dtype": types.get(t.type, str(t.type)), "constant": bool(constant)})
    return out


def representative_factory(x: np.ndarray, batch_size: int, limit: int = 200):
    """A representative-dataset generator factory over ``x`` in static batches."""
    x = np.asarray(x, dtype=np.float32)[:limit]
    n = (len(x) // batch_size) * batch_size
    if n == 0:
        raise ConversionError(f"representative_data holds {len(x)} inputs; at least batch_size={batch_size} needed.")

    def gen():
        for i in range(0, n, batch_size):
            yield [x[i : i + batch_size]]

    return gen
