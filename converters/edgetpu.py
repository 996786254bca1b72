"""Edge TPU readiness: check an int8 graph against the Coral Edge TPU's documented constraints.

The ``edgetpu_compiler`` (Linux x86-64 only, from Coral's apt repository) maps a full-integer
LiteRT graph to the Edge TPU. Where it is installed we run it; elsewhere we check the documented
requirements (coral.ai "TensorFlow models on the Edge TPU"): int8/uint8 tensors, static shapes,
tensors of at most 3 effective dimensions (only the innermost 3 may exceed size 1), one
subgraph, and supported operators. The first unsupported op splits the graph: it and everything
after it run on the CPU.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tflbayes.converters.tflite import op_names, tensor_report

__all__ = ["EDGETPU_OPS", "check_edgetpu", "compile_command", "run_compiler"]

EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE_CONV",
    "HARD_SWISH", "TRANSPOSE",
})


def compile_command(tflite_paths, out_dir) -> str:
    """The one command a user runs on a machine with the Edge TPU compiler (co-compiles all files)."""
    return f"edgetpu_compiler -s -o {out_dir} " + " ".join(str(p) for p in tflite_paths)


def check_edgetpu(blob: bytes) -> dict:
    """Check a full-integer flatbuffer against the Edge TPU's documented constraints.

    Returns:
        ``{"ready": bool, "problems": [...], "ops": [...], "unsupported_ops": [...]}``.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    problems = []
    ops = op_names(blob)
    unsupported = [o for o in ops if o not in EDGETPU_OPS]
    if unsupported:
        problems.append(f"ops the Edge TPU does not run (they and all later ops fall back to the CPU): "
                        f"{', '.join(unsupported)}")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    if len(model.subgraphs) != 1:
        problems.append(f"{len(model.subgraphs)} subgraphs; the Edge TPU compiler maps only one")
    for t in tensor_report(blob):
        if any(d < 0 for d in t["shape_signature"]):
            problems.append(f"tensor {t['name']!r} has a dynamic shape {t['shape_signature']}")
        outer = t["shape"][:-3]
        if not t["constant"] and any(d > 1 for d in outer):  # activations; filters are 4-D by design
            problems.append(f"tensor {t['name']!r} of shape {t['shape']} has more than 3 effective dimensions")
        if t["dtype"] in ("FLOAT32", "FLOAT16"):
            # float tensors (weights or activations) cannot run on the Edge TPU
            problems.append(f"tensor {t['name']!r} is {t['dtype']}, not int8")
    warnings = []
    if _has_grouped_conv(model):
        warnings.append("grouped CONV_2D (ensemble members on the channel axis): the Edge TPU's op table does "
                        "not say whether grouped convolutions map; if the compiler log shows them on the CPU, "
                        "use mode='members'")
    return {"ready": not problems, "problems": problems[:20], "num_problems": len(problems), "ops": ops,
            "unsupported_ops": unsupported, "warnings": warnings}


def _has_grouped_conv(model) -> bool:
    from tensorflow.lite.python import schema_py_generated as schema

    for sub in model.subgraphs:
        for op in sub.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) != schema.BuiltinOperator.CONV_2D:
                continue
            x, w = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]]
            if x.shape is not None and w.shape is not None and int(x.shape[-1]) != int(w.shape[-1]):
                return True
    return False


def run_compiler(tflite_paths, out_dir) -> dict:
    """Run ``edgetpu_compiler`` when it is on PATH; else say so and give the command."""
    cmd = compile_command(tflite_paths, out_dir)
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return {"compiled": False, "command": cmd, "reason": "edgetpu_compiler is not on PATH"}
    proc = subprocess.run([exe, "-s", "-o", str(out_dir), *map(str, tflite_paths)], capture_output=True,
                          text=True, timeout=600)
    outs = [Path(out_dir) / (Path(p).stem + "_edgetpu.tflite") for p in tflite_paths]
    return {"compiled": proc.returncode == 0 and all(o.is_file() for o in outs), "command": cmd,
            "log": (proc.stdout + proc.stderr)[-4000:], "files": [o.name for o in outs if o.is_file()]}
