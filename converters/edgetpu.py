"""Edge TPU: check int8 graphs against what the Edge TPU compiler 16 (its last release) accepts and maps.

The compiler (``edgetpu_compiler`` 16.0.384591198, Linux x86-64, Coral's apt repository) parses a
``.tflite`` with the TFLite op registry it was built with (mid 2021, TensorFlow 2.5). It refuses the
whole file when any operator has a version that registry does not know; users report exactly this for
models from newer converters::

    ERROR: Didn't find op for builtin opcode 'CONV_2D' version '6'        (grouped conv, TF 2.9)
    ERROR: Didn't find op for builtin opcode 'EXP' version '2'            (int8 EXP, TF 2.14+)
    ERROR: Didn't find op for builtin opcode 'TRANSPOSE_CONV' version '4' (TF 2.13)
    ERROR: Didn't find op for builtin opcode 'QUANTIZE' version '3'       (TF 2.7)

(google-coral/edgetpu issues 631, 845, 879; libedgetpu 71). :data:`COMPILER16_MAX_VERSIONS` is
that registry: for each builtin op, the highest version whose minimum runtime is TF <= 2.5 in
TFLite's own table (``tensorflow/lite/tools/versioning/runtime_version.cc``), which reproduces every
reported rejection above. Of the ops it parses, the compiler maps to the Edge TPU only those of
Coral's op table (:data:`EDGETPU_OPS`, coral.ai "TensorFlow models on the Edge TPU"), in one
subgraph, and only the first contiguous run: from the first op it cannot map, the rest of the graph
runs on the CPU. It also needs full-integer tensors, static shapes and at most 3 effective
dimensions; BATCH_MATMUL and grouped CONV_2D are never mapped (the batched layout for
``precision="edgetpu"`` therefore uses S parallel member networks + concatenation).

:func:`check_edgetpu` reports all of that per file; :func:`require_compiler16` raises a
:class:`ConversionError` (before a bundle is written) for what the compiler would refuse or could
not map at all. :func:`parameter_cache` estimates whether co-compiled members fit the on-chip
parameter cache (about 8 MB of SRAM; compiler reports show at most ~7.2 MiB used for parameters).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tflbayes.errors import ConversionError

__all__ = ["EDGETPU_OPS", "COMPILER16_MAX_VERSIONS", "COMPILER16_TF_VERSION", "PARAMETER_CACHE_BYTES",
           "op_versions", "check_edgetpu", "require_compiler16", "parameter_bytes", "parameter_cache",
           "compile_command", "run_compiler", "parse_compiler_log"]

#: The TensorFlow release whose TFLite op registry the Edge TPU compiler 16 carries.
COMPILER16_TF_VERSION = "2.5"

#: Ops the Edge TPU maps (Coral's supported-operations table); others run on the CPU.
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX",
    "REDUCE_MIN", "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT",
    "SQUARED_DIFFERENCE", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE_CONV",
    "HARD_SWISH", "TRANSPOSE",
})

#: Highest op version the compiler-16 parser knows (TFLite runtime_version.cc, versions of TF <= 2.5).
#: An op missing here did not exist in TF 2.5 (e.g. RANDOM_UNIFORM, GELU): the compiler cannot parse it.
COMPILER16_MAX_VERSIONS = {
    "ABS": 3, "ADD": 3, "ADD_N": 1, "ARG_MAX": 2, "ARG_MIN": 2, "AVERAGE_POOL_2D": 3, "BATCH_MATMUL": 4,
    "BATCH_TO_SPACE_ND": 3, "BIDIRECTIONAL_SEQUENCE_LSTM": 3, "BIDIRECTIONAL_SEQUENCE_RNN": 3,
    "BROADCAST_TO": 3, "CALL_ONCE": 1, "CAST": 1, "CEIL": 1, "COMPLEX_ABS": 1, "CONCATENATION": 3,
    "CONV_2D": 5, "CONV_3D": 1, "COS": 1, "CUMSUM": 1, "DENSIFY": 1, "DEPTH_TO_SPACE": 2,
    "DEPTHWISE_CONV_2D": 6, "DEQUANTIZE": 4, "DIV": 2, "ELU": 1, "EMBEDDING_LOOKUP": 3,
    "EMBEDDING_LOOKUP_SPARSE": 1, "EQUAL": 3, "EXP": 1, "EXPAND_DIMS": 1, "FAKE_QUANT": 2, "FILL": 3,
    "FLOOR": 1, "FLOOR_DIV": 2, "FLOOR_MOD": 1, "FULLY_CONNECTED": 9, "GATHER": 5, "GATHER_ND": 3,
    "GREATER": 2, "GREATER_EQUAL": 2, "HARD_SWISH": 1, "HASHTABLE": 1, "HASHTABLE_FIND": 1,
    "HASHTABLE_IMPORT": 1, "HASHTABLE_LOOKUP": 1, "HASHTABLE_SIZE": 1, "IF": 1, "IMAG": 1,
    "L2_NORMALIZATION": 2, "L2_POOL_2D": 1, "LEAKY_RELU": 2, "LESS": 2, "LESS_EQUAL": 2,
    "LOCAL_RESPONSE_NORMALIZATION": 1, "LOG": 1, "LOG_SOFTMAX": 2, "LOGICAL_AND": 1, "LOGICAL_NOT": 1,
    "LOGICAL_OR": 1, "LOGISTIC": 3, "LSH_PROJECTION": 1, "LSTM": 4, "MATRIX_DIAG": 1,
    "MATRIX_SET_DIAG": 1, "MAX_POOL_2D": 3, "MAXIMUM": 4, "MEAN": 3, "MINIMUM": 4, "MIRROR_PAD": 2,
    "MUL": 4, "NEG": 1, "NON_MAX_SUPPRESSION_V4": 1, "NON_MAX_SUPPRESSION_V5": 1, "NOT_EQUAL": 3,
    "ONE_HOT": 1, "PACK": 3, "PAD": 3, "PADV2": 3, "POW": 1, "PRELU": 1, "QUANTIZE": 2, "RANGE": 1,
    "RANK": 1, "REAL": 1, "REDUCE_ANY": 1, "REDUCE_MAX": 3, "REDUCE_MIN": 3, "REDUCE_PROD": 1,
    "RELU": 3, "RELU6": 3, "RELU_N1_TO_1": 1, "RESHAPE": 1, "RESIZE_BILINEAR": 4,
    "RESIZE_NEAREST_NEIGHBOR": 4, "REVERSE_SEQUENCE": 1, "REVERSE_V2": 3, "RFFT2D": 1, "RNN": 3,
    "ROUND": 1, "RSQRT": 2, "SCATTER_ND": 1, "SEGMENT_SUM": 1, "SELECT": 2, "SELECT_V2": 1,
    "SHAPE": 1, "SIN": 1, "SKIP_GRAM": 1, "SLICE": 5, "SOFTMAX": 3, "SPACE_TO_BATCH_ND": 3,
    "SPACE_TO_DEPTH": 2, "SPARSE_TO_DENSE": 3, "SPLIT": 4, "SPLIT_V": 2, "SQRT": 1, "SQUARE": 1,
    "SQUARED_DIFFERENCE": 2, "SQUEEZE": 2, "STRIDED_SLICE": 5, "SUB": 5, "SUM": 2, "SVDF": 4,
    "TANH": 3, "TILE": 2, "TOPK_V2": 2, "TRANSPOSE": 5, "TRANSPOSE_CONV": 3,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": 3, "UNIDIRECTIONAL_SEQUENCE_RNN": 3, "UNIQUE": 1, "UNPACK": 4,
    "WHERE": 1, "WHILE": 1, "ZEROS_LIKE": 1,
}

#: On-chip SRAM the compiler uses to cache parameters (Coral: "roughly 8 MB"; compiler-16 reports
#: show up to 7.16 MiB used). An estimate: the compiler's own report is authoritative.
PARAMETER_CACHE_BYTES = int(7.16 * 2**20)


def _model(blob: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(blob))


def _op_name(model, op) -> str:
    from tensorflow.lite.python import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    oc = model.operatorCodes[op.opcodeIndex]
    code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
    if code == schema.BuiltinOperator.CUSTOM:
        cc = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
        return f"CUSTOM:{cc}"
    return codes.get(code, str(code))


def op_versions(blob: bytes) -> list:
    """``[{"op", "version", "max_version"}]`` of every operator code in the flatbuffer (max: compiler 16's)."""
    model = _model(blob)
    from tensorflow.lite.python import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out = []
    for oc in model.operatorCodes:
        code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
        name = codes.get(code, str(code))
        out.append({"op": name, "version": int(oc.version), "max_version": COMPILER16_MAX_VERSIONS.get(name)})
    return sorted(out, key=lambda e: (e["op"], e["version"]))


def _is_grouped_conv(sub, op) -> bool:
    x, w = sub.tensors[op.inputs[0]], sub.tensors[op.inputs[1]]
    return x.shape is not None and w.shape is not None and int(x.shape[-1]) != int(w.shape[-1])


def parameter_bytes(blob: bytes) -> int:
    """Bytes of the constant tensors (int8 weights, int32 biases): what the Edge TPU caches on chip."""
    model = _model(blob)
    seen, total = set(), 0
    for sub in model.subgraphs:
        for t in sub.tensors:
            buf = model.buffers[t.buffer] if 0 < t.buffer < len(model.buffers) else None
            if buf is not None and buf.data is not None and t.buffer not in seen:
                seen.add(t.buffer)
                total += len(buf.data)
    return total


def check_edgetpu(blob: bytes) -> dict:
    """Check one full-integer flatbuffer against compiler 16 and the Edge TPU's constraints.

    Returns:
        ``{"ready", "compiler16_accepts", "rejected", "problems", "num_problems", "ops", "op_versions",
        "unsupported_ops", "mapped_ops", "cpu_ops", "grouped_conv2d", "batch_matmul",
        "parameter_bytes"}``: ``rejected`` lists what makes the compiler refuse the file or map
        nothing of it (unknown op versions, grouped CONV_2D, BATCH_MATMUL, float tensors, dynamic
        shapes, several subgraphs); ``problems`` what only moves ops to the CPU; ``mapped_ops`` /
        ``cpu_ops`` count the ops in execution order before / from the first op it cannot map.
    """
    from tflbayes.converters.tflite import tensor_report

    model = _model(blob)
    rejected, problems = [], []
    versions = op_versions(blob)
    for v in versions:
        if v["op"] == "CUSTOM":  # parsed as custom ops (they run on the CPU: reported with the unmapped ops)
            continue
        if v["max_version"] is None:
            rejected.append(f"{v['op']} (version {v['version']}) did not exist in TF {COMPILER16_TF_VERSION}: "
                            "the Edge TPU compiler 16 cannot parse the file")
        elif v["version"] > v["max_version"]:
            rejected.append(f"{v['op']} version {v['version']}: the Edge TPU compiler 16 knows versions "
                            f"<= {v['max_version']} and refuses the file (\"Didn't find op for builtin opcode\")")
    if len(model.subgraphs) != 1:
        rejected.append(f"{len(model.subgraphs)} subgraphs; the Edge TPU compiler maps only one")
    grouped = bmm = 0
    order = []
    for sub in model.subgraphs[:1]:
        for op in sub.operators or []:
            name = _op_name(model, op)
            order.append(name)
            grouped += name == "CONV_2D" and _is_grouped_conv(sub, op)
            bmm += name == "BATCH_MATMUL"
    if grouped:
        rejected.append(f"{grouped} grouped CONV_2D op(s) (members packed on the channel axis): compiler 16 "
                        "does not know CONV_2D version 6 and the Edge TPU has no grouped convolution")
    if bmm:
        rejected.append(f"{bmm} BATCH_MATMUL op(s): the Edge TPU does not run BATCH_MATMUL")
    unsupported = sorted({o for o in order if o not in EDGETPU_OPS})
    first_cpu = next((i for i, o in enumerate(order) if o not in EDGETPU_OPS), len(order))
    if unsupported:
        problems.append(f"ops the Edge TPU does not run: {', '.join(unsupported)}; the first of them and every "
                        f"later op ({len(order) - first_cpu} of {len(order)}) fall back to the CPU")
    for t in tensor_report(blob):
        if any(d < 0 for d in t["shape_signature"]):
            rejected.append(f"tensor {t['name']!r} has a dynamic shape {t['shape_signature']}")
        if not t["constant"] and any(d > 1 for d in t["shape"][:-3]):  # activations; filters are 4-D by design
            problems.append(f"tensor {t['name']!r} of shape {t['shape']} has more than 3 effective dimensions "
                            "(use batch_size=1)")
        if t["dtype"] in ("FLOAT32", "FLOAT16"):
            rejected.append(f"tensor {t['name']!r} is {t['dtype']}: the Edge TPU needs a full-integer graph")
    return {"ready": not rejected and not problems, "compiler16_accepts": not rejected,
            "rejected": rejected[:20], "problems": problems[:20], "num_problems": len(rejected) + len(problems),
            "ops": sorted(set(order)), "op_versions": versions, "unsupported_ops": unsupported,
            "mapped_ops": first_cpu, "cpu_ops": len(order) - first_cpu, "grouped_conv2d": int(grouped),
            "batch_matmul": int(bmm), "parameter_bytes": parameter_bytes(blob)}


def require_compiler16(reports: dict, mode: str) -> None:
    """Raise :class:`ConversionError` naming every file and reason compiler 16 would refuse."""
    bad = {f: r["rejected"] for f, r in reports.items() if r["rejected"]}
    if not bad:
        return
    hint = {"batched": "the batched Edge TPU layout must be S parallel member networks; mode='members' compiles "
                       "each member on its own",
            "stochastic": "the deterministic prefix must be full-integer builtins of TF 2.5; mode='members' on "
                          "an ensemble avoids sampling on the device",
            "dirichlet": "the EnD² student must use layers whose int8 ops TF 2.5 had (Dense, Conv2D, pooling)",
            "members": "each member must use layers whose int8 ops TF 2.5 had (Dense, Conv2D, DepthwiseConv2D, "
                       "pooling, ReLU/ReLU6)"}.get(mode, "")
    lines = "; ".join(f"{f}: {', '.join(r)}" for f, r in bad.items())
    raise ConversionError(f"precision='edgetpu' cannot make a bundle the Edge TPU compiler 16 accepts: {lines}. "
                          f"{hint}; precision='int8' makes the same bundle for the CPU.")


def parameter_cache(reports: dict, files) -> dict:
    """Whether the co-compiled files' parameters fit the on-chip cache (the compiler caches them in order)."""
    sizes = [int(reports[f]["parameter_bytes"]) for f in files]
    fitting, acc = 0, 0
    for b in sizes:
        if acc + b > PARAMETER_CACHE_BYTES:
            break
        acc += b
        fitting += 1
    return {"parameter_bytes": dict(zip(files, sizes)), "total_parameter_bytes": sum(sizes),
            "cache_bytes": PARAMETER_CACHE_BYTES, "fits": sum(sizes) <= PARAMETER_CACHE_BYTES,
            "files_cached": fitting, "estimate": "int8 weight + int32 bias bytes vs ~7.16 MiB of parameter "
            "cache; files after the first that does not fit stream their parameters from host memory"}


def compile_command(tflite_paths, out_dir) -> str:
    """The one command (all files co-compiled, so they share the parameter cache), runnable as printed."""
    paths = [str(Path(p).resolve()) for p in tflite_paths]
    return "edgetpu_compiler -s -o " + shlex.quote(str(Path(out_dir).resolve())) + " " + " ".join(map(shlex.quote, paths))


def run_compiler(tflite_paths, out_dir, final_dir=None) -> dict:
    """Co-compile the files in ``out_dir`` when ``edgetpu_compiler`` is on PATH; else say so.

    ``final_dir``: where the files will live (the bundle folder after the atomic rename); the
    recorded command points there, not at the temporary folder the compiler ran in.
    """
    final = Path(final_dir) if final_dir is not None else Path(out_dir)
    cmd = compile_command([final / Path(p).name for p in tflite_paths], final)
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        return {"compiled": False, "command": cmd, "reason": "edgetpu_compiler is not on PATH"}
    names = [Path(p).name for p in tflite_paths]
    try:
        proc = subprocess.run([exe, "-s", "-o", ".", *names], cwd=str(out_dir), capture_output=True, text=True,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"compiled": False, "command": cmd, "reason": f"edgetpu_compiler did not run: {e}"}
    outs = [Path(out_dir) / (Path(n).stem + "_edgetpu.tflite") for n in names]
    log = proc.stdout + proc.stderr
    return {"compiled": proc.returncode == 0 and all(o.is_file() for o in outs), "command": cmd,
            "log": log[-4000:], "files": [o.name for o in outs if o.is_file()], "report": parse_compiler_log(log)}


_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_FIELDS = {"on_chip_parameter_bytes": r"On-chip memory used for caching model parameters: ([\d.]+)(B|KiB|MiB|GiB)",
           "on_chip_remaining_bytes": r"On-chip memory remaining for caching model parameters: ([\d.]+)(B|KiB|MiB|GiB)",
           "off_chip_parameter_bytes": r"Off-chip memory used for streaming uncached model parameters: ([\d.]+)(B|KiB|MiB|GiB)"}


def parse_compiler_log(log: str) -> list:
    """Per compiled model of an ``edgetpu_compiler`` log: its input file, the parameter bytes cached on chip
    and streamed from the host (the compiler's own account, which replaces :func:`parameter_cache`'s
    estimate), the Edge TPU subgraphs and the ops mapped to the Edge TPU / left on the CPU."""
    models = []
    for block in re.split(r"(?m)^(?=Input model: )", log)[1:]:
        entry = {"input_model": block.split("\n", 1)[0][len("Input model: "):].strip()}
        for key, pattern in _FIELDS.items():
            m = re.search(pattern, block)
            entry[key] = int(round(float(m.group(1)) * _UNITS[m.group(2)])) if m else None
        for key, pattern in (("edgetpu_subgraphs", r"Number of Edge TPU subgraphs: (\d+)"),
                             ("ops_total", r"Total number of operations: (\d+)"),
                             ("ops_on_edgetpu", r"Number of operations that will run on Edge TPU: (\d+)"),
                             ("ops_on_cpu", r"Number of operations that will run on CPU: (\d+)")):
            m = re.search(pattern, block)
            entry[key] = int(m.group(1)) if m else None
        models.append(entry)
    return models
