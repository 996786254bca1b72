"""``tb.convert(..., target="micro")``: what a microcontroller bundle may hold, refused before writing.

A micro bundle is an ``int8`` or ``float32`` bundle whose every graph runs in TFLite Micro:

- only ops TFLite Micro's op resolver has (:data:`TFLM_OPS`, the ``MicroMutableOpResolver``
  ``Add*`` methods of TFLite Micro 2024-2025; an op outside the list is confirmed by loading the
  graph in TFLite Micro itself before it is refused);
- no random ops (TFLite Micro has no RANDOM_UNIFORM / RANDOM_STANDARD_NORMAL), no SCATTER_ND
  (shared-mask layout), no DENSIFY (LiteRT sparse), no float16 / dynamic-range weights;
- every graph is measured in TFLite Micro's interpreter: the smallest arena that allocates and
  invokes (:mod:`tflbayes.converters.micro.arena`) and the flatbuffer bytes, in ``manifest["micro"]``.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from tflbayes.errors import ConversionError

__all__ = ["TFLM_OPS", "MICRO_PRECISIONS", "check_micro_options", "check_micro_ops", "measure_micro",
           "write_micro_folder", "op_layers", "build_micro_stochastic", "annotate_noise"]

MICRO_PRECISIONS = ("int8", "float32")
TFLM_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND BROADCAST_ARGS
BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE DEPTHWISE_CONV_2D DEQUANTIZE DIV
ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER
GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT
LOGICAL_OR LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU
QUANTIZE READ_VARIABLE REDUCE_MAX RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT
SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE
SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE
WHILE ZEROS_LIKE
""".split())
# ops known to be missing, with what to do instead
_KNOWN_MISSING = {
    "RANDOM_UNIFORM": "TFLite Micro has no random ops: MC dropout / VI on a microcontroller need the noise as graph "
                      "inputs (filled by tb_rng_uniform); use mode='members' or 'batched' of an ensemble meanwhile",
    "RANDOM_STANDARD_NORMAL": "TFLite Micro has no random ops: VI on a microcontroller needs the noise as graph "
                              "inputs (filled by tb_rng_normal)",
    "SCATTER_ND": "the shared-mask sparse layout densifies with SCATTER_ND, which TFLite Micro lacks: use "
                  "sparse_layout='dense'",
    "DENSIFY": "LiteRT's sparse tensor format needs DENSIFY, which TFLite Micro lacks: use sparse_layout='dense'",
}


def check_micro_options(posterior, mode: str, precision: str, sparse_layout: str) -> None:
    """Refuse precisions, layouts and modes a microcontroller bundle cannot have (before any conversion)."""
    if precision not in MICRO_PRECISIONS:
        raise ConversionError(
            f"target='micro' takes precision 'int8' (full integer, the usual MCU choice) or 'float32'; received "
            f"precision={precision!r} ({'TFLite Micro has no float16 kernels' if precision == 'float16' else 'dynamic-range (hybrid) kernels are not in TFLite Micro' if precision == 'dynamic' else 'the Edge TPU is not a microcontroller'}).")
    if sparse_layout != "dense":
        raise ConversionError(
            f"target='micro' needs sparse_layout='dense' (received {sparse_layout!r}): "
            + _KNOWN_MISSING["SCATTER_ND" if sparse_layout == "shared_mask" else "DENSIFY"] + ".")
    if mode == "stochastic" and not _noise_inputs_available():
        raise ConversionError(
            "mode='stochastic' with target='micro' needs the stochastic graph builder's noise inputs "
            "(noise='inputs'), which this tflbayes build lacks; " + _KNOWN_MISSING["RANDOM_UNIFORM"] + ".")


def _noise_inputs_available() -> bool:
    try:
        from tflbayes.converters.graphs.stochastic_general import NOISE_SOURCES
    except ImportError:
        return False
    return "inputs" in NOISE_SOURCES


def build_micro_stochastic(posterior, request):
    """``(Built, noise_specs)``: MC dropout / VI with the noise as graph inputs (no random op).

    float32: one graph ``model.tflite`` (x and the noise in, the uncertainty out). int8: the
    deterministic prefix in int8 (``body.tflite``, run once) and the sampling suffix with the head in
    float (``head.tflite``: the prefix's features and the noise in), as for LiteRT int8 bundles.
    ``noise_specs`` lists ``{"name", "shape", "distribution"}`` per noise input of the file that samples.
    """
    from tflbayes.converters.graphs.stochastic_general import build_stochastic_general, stochastic_cut
    from tflbayes.converters.modes import Built, check_int8_layers

    s, b = request.num_samples, request.batch_size
    cut = stochastic_cut(posterior)
    outputs = ["probs", "total", "aleatoric", "epistemic", "member_probs"]
    if not request.int8:
        fn, specs = build_stochastic_general(posterior, s, b, head=True, part="all", noise="inputs")
        return Built([("model", fn)], outputs, cut.feature_names(), layout="general"), {"model.tflite": specs}
    if not cut.has_prefix:
        raise ConversionError(
            f"Model {posterior.model.name!r} samples from its input: no deterministic prefix to run in int8 on the "
            "microcontroller; use precision='float32' with target='micro'.")
    check_int8_layers(cut.prefix_layers, request.precision)
    body, _ = build_stochastic_general(posterior, s, b, part="prefix")
    head, specs = build_stochastic_general(posterior, s, b, head=True, part="suffix", noise="inputs")
    return Built([("body", body)], outputs, cut.feature_names(), head, "general"), {"head.tflite": specs}


def annotate_noise(manifest: dict, noise_specs: dict) -> None:
    """Mark the noise inputs in the manifest's tensor map (``distribution``) and list them in ``manifest["noise"]``."""
    listed = []
    for st in manifest["stages"]:
        for f, entries in (st.get("tensors") or {}).items():
            specs = {sp["name"]: sp for sp in noise_specs.get(f, [])}
            for e in entries["inputs"]:
                if e["name"] in specs:
                    if list(specs[e["name"]]["shape"]) != e["shape"]:
                        raise ConversionError(f"{f}: noise input {e['name']} has shape {e['shape']}, the builder "
                                              f"says {specs[e['name']]['shape']}.")
                    e["distribution"] = specs[e["name"]]["distribution"]
                    listed.append({"file": f, "name": e["name"], "index": e["index"], "shape": e["shape"],
                                   "distribution": e["distribution"]})
    missing = sum(len(v) for v in noise_specs.values()) - len(listed)
    if missing:
        raise ConversionError(f"{missing} noise input(s) of the stochastic graph are missing from its .tflite inputs.")
    manifest["noise"] = {"inputs": listed, "generator": "xoshiro128** (tb_rng_seed / tb_rng_uniform / tb_rng_normal), "
                         "filled in input order before every invoke"}


def op_layers(blob: bytes, op: str) -> list:
    """The layer names (from output tensor names) of every ``op`` in a flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    code = getattr(schema.BuiltinOperator, op, None)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(blob))
    layers = []
    for sub in model.subgraphs:
        for o in sub.operators or []:
            oc = model.operatorCodes[o.opcodeIndex]
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) != code:
                continue
            for t in (o.outputs if o.outputs is not None else [])[:1]:
                name = sub.tensors[t].name
                name = name.decode() if isinstance(name, bytes) else str(name)
                parts = [p for p in name.split(";")[0].split("/") if p]
                layer = parts[1] if len(parts) > 2 else parts[0] if parts else name
                if layer not in layers:
                    layers.append(layer)
    return layers


def _loads_in_tflm(blob: bytes, op: str) -> bool:
    """Whether TFLite Micro itself resolves ``op`` (for ops outside the static list)."""
    import tempfile

    from tflbayes.converters.micro.arena import measure_arena

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(blob)
        f.flush()
        try:
            measure_arena(f.name, start=1 << 20)
        except ConversionError as e:
            return f"'{op}'" not in str(e) and "Didn't find op" not in str(e)
    return True


def check_micro_ops(blobs: dict, posterior, mode: str, precision: str) -> None:
    """Refuse graphs with ops TFLite Micro lacks, naming the op, the file and the layer, and what works."""
    from tflbayes.converters.micro.rewrite import tile_to_broadcast
    from tflbayes.converters.tflite import op_names

    for name in list(blobs):  # TILE over size-1 axes (the stochastic builders' sample tiling) -> BROADCAST_TO
        if "TILE" in op_names(blobs[name]):
            blobs[name] = tile_to_broadcast(blobs[name], name)
    for name, blob in blobs.items():
        for op in op_names(blob):
            if op in TFLM_OPS:
                continue
            if op.startswith("CUSTOM:"):
                raise ConversionError(f"{name}: custom/Flex op {op[7:]!r} cannot run in TFLite Micro; convert "
                                      "without allow_flex.")
            if op not in _KNOWN_MISSING and _loads_in_tflm(blob, op):
                continue
            layers = op_layers(blob, op)
            hint = _KNOWN_MISSING.get(op) or (
                f"try mode='members' (plain per-member graphs) or precision="
                f"{'float32' if precision == 'int8' else 'int8'}, or replace the layer")
            raise ConversionError(
                f"target='micro': {name} ({mode}/{precision}) uses op {op}, which TFLite Micro's op resolver lacks"
                f"{' (layer ' + ', '.join(layers[:5]) + ')' if layers else ''}; {hint}. Nothing was written.")


def _tflm_version() -> str:
    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def measure_micro(folder, manifest: dict) -> dict:
    """``manifest["micro"]``: per graph the smallest arena and the flatbuffer bytes, measured in TFLite Micro."""
    from tflbayes.converters.micro.arena import measure_arena
    from tflbayes.runtime.manifest import stage_files

    from tflbayes.converters.tflite import op_names

    folder = Path(folder)
    graphs = {}
    for st in manifest["stages"]:
        for f in stage_files(st):
            manifest["ops"][f] = op_names((folder / f).read_bytes())  # after the micro rewrites
            graphs[f] = {"arena_bytes": measure_arena(folder / f), "flatbuffer_bytes": (folder / f).stat().st_size,
                         "ops": manifest["ops"][f]}
    per_invoke = sum(g["flatbuffer_bytes"] for g in graphs.values())
    return {
        "tflite_micro": _tflm_version(),
        "graphs": graphs,
        "flash_bytes": per_invoke,
        "arena_bytes_max": max(g["arena_bytes"] for g in graphs.values()),
        "arena_note": "smallest arena that allocated and invoked in TFLite Micro's Python interpreter (64-bit "
                      "host); graphs run one after another can share one arena of arena_bytes_max",
        "kernels": "TFLite Micro reference kernels (int8 thresholds are calibrated on them)",
    }


def write_micro_folder(folder, manifest: dict) -> None:
    """Write the bundle's ``micro/`` folder (see :mod:`tflbayes.converters.micro.emit`)."""
    from tflbayes.converters.micro.emit import write_micro

    manifest["micro"]["folder"] = write_micro(Path(folder), manifest)
