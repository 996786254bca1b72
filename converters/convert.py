"""``tb.convert``: a Posterior -> a verified LiteRT bundle (``.tflite`` files + ``manifest.json``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from tflbayes._checks import (check_choice, check_classification, check_inputs, check_labelled, check_positive_int,
                              check_posterior)
from tflbayes._io import atomic_dir
from tflbayes._keras import tf
from tflbayes.errors import ConversionError, InvalidInputError
from tflbayes.converters.verify import verify_bundle
from tflbayes.runtime.manifest import MODES, PRECISIONS, TARGETS, build_manifest, write_manifest

__all__ = ["convert", "DEFAULT_COVERAGE", "SPARSE_LAYOUTS"]

DEFAULT_COVERAGE = 0.95
# "dense": kernels as constants; "shared_mask": batched, mask indices once + values per member,
# densified in the graph; "tflite": members, LiteRT's own sparse tensor format per file.
SPARSE_LAYOUTS = ("auto", "dense", "shared_mask", "tflite")
_VERIFY_INPUTS = 100


def _auto_sparse_layout(posterior, mode: str, precision: str, target: str) -> str:
    """``"shared_mask"`` where the posterior stores one shared mask and the bundle can keep it, else ``"dense"``."""
    mask = getattr(posterior, "mask", None)
    shared = mask is not None and any(m is not None for m in mask)
    fits = mode == "batched" and precision in ("float32", "float16") and target == "litert"
    return "shared_mask" if shared and fits else "dense"


def _default_mode(posterior) -> str:
    from tflbayes.converters.modes import default_mode

    return default_mode(posterior)


def _check_mode_fits(posterior, mode):
    from tflbayes.converters.modes import check_fits

    check_fits(posterior, mode)


def _calibrate(bundle, calibration, coverage) -> Optional[dict]:
    if calibration is None:
        return None
    x, y = calibration
    pred = bundle.predict(x)
    score = "epistemic" if pred.epistemic is not None else "total"
    thr = {"score": score, "coverage": coverage, "num_inputs": int(len(x))}
    for k in ("epistemic", "total"):
        u = getattr(pred, k)
        if u is not None:
            thr[k] = float(np.quantile(u, coverage))
    accepted = getattr(pred, score) <= thr[score]
    correct = pred.label == y
    thr["accepted_fraction"] = float(accepted.mean())
    thr["accuracy_all"] = float(correct.mean())
    thr["accuracy_accepted"] = float(correct[accepted].mean()) if accepted.any() else None
    return thr


def convert(posterior, out, mode: Optional[str] = None, precision: str = "float32", representative_data=None,
            num_samples: Optional[int] = None, calibration=None, *, batch_size: int = 1,
            allow_flex: bool = False, coverage: float = DEFAULT_COVERAGE, verification_data=None,
            verify: bool = True, sparse_layout: str = "auto", target: str = "litert",
            layout: str = "auto"):
    """Convert a posterior to a verified LiteRT bundle and return it loaded (:class:`~tflbayes.runtime.Bundle`).

    Args:
        posterior: an ensemble, stochastic, Dirichlet (EnD²) or distilled (BDK / GPED) posterior.
        out: the bundle folder (written atomically: a failed conversion leaves nothing behind).
        mode: ``"members"`` (one file per member), ``"batched"`` (all members in one graph),
            ``"stochastic"`` (S samples per invoke from builtin random ops), ``"dirichlet"``.
            Default: ``batched`` for ensembles and BDK/GPED students (one network and its heads),
            ``stochastic`` for stochastic posteriors, ``dirichlet`` for EnD² students.
        precision: ``float32``, ``float16``, ``dynamic`` (int8 weights), ``int8`` (full integer,
            int8 input; the uncertainty head stays float in a separate CPU graph), ``edgetpu``
            (int8 body checked against the Edge TPU's constraints, head on the CPU).
        representative_data: inputs ``[N, *input_shape]`` for int8 calibration (required for
            ``int8`` / ``edgetpu``).
        num_samples: S per invoke for stochastic bundles (default: the posterior's); for
            ensembles, the first ``num_samples`` members (default: all).
        calibration: ``(x_val, y_val)``: sets the abstention thresholds (the uncertainty that
            keeps ``coverage`` of in-distribution inputs) and is the default verification data.
        batch_size: static batch of the graphs (1 for streaming sensors).
        allow_flex: permit Select TF ops (refused by default, naming the op and layer).
        coverage: fraction of in-distribution inputs the calibrated threshold accepts.
        verification_data: inputs for verification (default: calibration inputs, else the
            representative data, else the first input-shaped Gaussian noise — noted in the report).
        verify: run the verification (default True; a failure raises VerificationError).
        sparse_layout: how sparse (pruned) kernels are stored. ``"auto"`` (default): follows the
            posterior — ``"shared_mask"`` for an ensemble whose members share one mask when the
            bundle is ``batched`` float32 / float16 on LiteRT, else ``"dense"`` (the choice is in
            ``manifest["provenance"]["sparse_layout"]``). ``"dense"``: as dense constants. ``"shared_mask"`` (mode ``batched``, float32 / float16): the members'
            shared sparsity pattern once (int32 indices) and each member's values, densified in
            the graph with SCATTER_ND (for ``tb.compress.prune(..., method="shared_mask")``
            posteriors: O(2N + NS) bytes; costs a densification per invoke). ``"tflite"`` (mode
            ``members``, float32): LiteRT's own sparse tensor format in every member file
            (``tf.lite.Optimize.EXPERIMENTAL_SPARSITY``).
        layout: how ``batched`` and ``stochastic`` graphs lay out the samples: ``"auto"`` (default)
            ``"packed"`` where the model is a chain the packed builders support (grouped convs /
            BATCH_MATMUL; broadcast noise, LRT and packed masks), else ``"general"`` (any
            Sequential / functional model: the members' own networks side by side, or the
            model's own layers on S tiled rows after the deterministic prefix); the Edge TPU
            always gets ``general``. The choice is recorded in ``manifest["layout"]``.
        target: ``"litert"`` (default) or ``"micro"``: a microcontroller bundle (precision
            ``int8`` or ``float32``; only ops TFLite Micro's resolver has, refused before writing)
            whose graphs are verified in TFLite Micro's interpreter, with the smallest arena per
            graph in ``manifest["micro"]``, thresholds calibrated on TFLite Micro's reference
            kernels and a ``micro/`` folder (C arrays, ``bundle_config.h``, the C99 library).
    """
    from tflbayes.runtime import Bundle

    check_posterior(posterior)
    check_classification(posterior, "tb.convert")
    mode = mode if mode is not None else _default_mode(posterior)
    check_choice("mode", mode, MODES)
    check_choice("precision", precision, PRECISIONS)
    check_choice("sparse_layout", sparse_layout, SPARSE_LAYOUTS)
    check_choice("target", target, TARGETS)
    if sparse_layout == "auto":
        sparse_layout = _auto_sparse_layout(posterior, mode, precision, target)
    if target == "micro":
        from tflbayes.converters.micro.target import check_micro_options

        check_micro_options(posterior, mode, precision, sparse_layout)
    _check_mode_fits(posterior, mode)
    if sparse_layout == "shared_mask" and (mode != "batched" or precision not in ("float32", "float16")):
        raise InvalidInputError(
            "sparse_layout='shared_mask' is for mode='batched' at precision float32 or float16; received "
            f"mode={mode!r}, precision={precision!r}.")
    if sparse_layout == "tflite" and (mode != "members" or precision != "float32"):
        raise InvalidInputError(
            "sparse_layout='tflite' (LiteRT's sparse tensor format) is for mode='members' at precision float32; "
            f"received mode={mode!r}, precision={precision!r}.")
    batch_size = check_positive_int("batch_size", batch_size)
    if not 0 < coverage < 1:
        raise InvalidInputError(f"Invalid value received for argument `coverage`. Expected a float in (0, 1). Received: coverage={coverage!r}")
    int8 = precision in ("int8", "edgetpu")
    if int8 and representative_data is None:
        raise InvalidInputError(
            f"precision={precision!r} needs representative_data (a few hundred typical inputs) to "
            "calibrate the int8 ranges; pass representative_data=x_train[:300] (CLI: --data).")
    rep = check_inputs(representative_data, posterior.input_shape, "representative_data") if representative_data is not None else None
    if calibration is not None:
        calibration = check_labelled(calibration, posterior.input_shape, posterior.num_classes, "calibration")
    if mode in ("members", "batched"):
        s = posterior.num_samples if num_samples is None else check_positive_int("num_samples", num_samples)
        if s > posterior.num_samples:
            raise InvalidInputError(f"num_samples={s} exceeds the ensemble's {posterior.num_samples} members.")
        if s < posterior.num_samples:
            from tflbayes.posterior import EnsemblePosterior

            posterior = EnsemblePosterior(posterior.model, posterior.members[:s], posterior.method,
                                          posterior.options, posterior.class_names)
    elif mode == "dirichlet":
        s = 1  # one forward pass; the Dirichlet is in closed form (no samples in the graph)
    elif mode == "single_pass":  # the S heads / members of one pass; a Laplace head is a closed form
        s = posterior.num_samples if posterior.kind == "single_pass" else 1
    else:
        s = posterior.num_samples if num_samples is None else check_positive_int("num_samples", num_samples)

    if verification_data is not None:
        xv, xv_source = check_inputs(verification_data, posterior.input_shape, "verification_data"), "verification_data"
    elif calibration is not None:
        xv, xv_source = calibration[0], "calibration"
    elif rep is not None:
        xv, xv_source = rep, "representative_data"
    else:
        rng = np.random.default_rng(0)
        xv, xv_source = rng.normal(0.5, 0.5, (32, *posterior.input_shape)).astype(np.float32), "synthetic gaussian noise"
    xv = xv[:_VERIFY_INPUTS]

    from tflbayes.converters.modes import Request, build

    noise_specs = None
    if target == "micro" and mode == "stochastic":  # TFLite Micro has no random ops: the noise as graph inputs
        from tflbayes.converters.micro.target import build_micro_stochastic

        built, noise_specs = build_micro_stochastic(posterior, Request(s, batch_size, precision, sparse_layout, layout))
    else:
        built = build(posterior, mode, Request(s, batch_size, precision, sparse_layout, layout))
    bodies = built.bodies
    rep_gen = None
    if int8:
        from tflbayes.converters.tflite import representative_factory

        rep_gen = representative_factory(rep, batch_size)
    from tflbayes.converters.tflite import op_names, to_tflite

    blobs = {}
    for stem, fn in bodies:
        blobs[f"{stem}.tflite"] = to_tflite(fn, posterior.model, precision, rep_gen, allow_flex=allow_flex,
                                            sparse=(sparse_layout == "tflite"))
    if built.head is not None:  # int8: the float head (random ops too, for stochastic) on the CPU
        blobs["head.tflite"] = to_tflite(built.head, posterior.model, "float32", allow_flex=allow_flex)
    ops = {name: op_names(b) for name, b in blobs.items()}
    flex = sorted({o for names in ops.values() for o in names if o.startswith("CUSTOM:")})
    if flex and not allow_flex:  # belt and braces: the converter was told builtins only
        raise ConversionError(f"The graph contains non-builtin ops {flex}; pass allow_flex=True to accept them.")

    edgetpu = None
    if precision == "edgetpu":
        from tflbayes.converters.edgetpu import check_edgetpu, require_compiler16

        body_names = [n for n in blobs if n != "head.tflite"]
        edgetpu = {n: check_edgetpu(blobs[n]) for n in body_names}
        require_compiler16(edgetpu, mode)  # before anything is written

    # what the pipeline outputs (per mode and kind, from the registry) and what an int8 body hands its head
    outputs, body_out = built.outputs, built.body_out

    if target == "micro":  # refuse before anything is written
        from tflbayes.converters.micro.target import check_micro_ops

        check_micro_ops(blobs, posterior, mode=mode, precision=precision)
    with atomic_dir(out) as tmp:
        for name, blob in blobs.items():
            (tmp / name).write_bytes(blob)
        manifest = build_manifest(tmp, posterior, mode=mode, precision=precision, num_samples=s,
                                  batch_size=batch_size, outputs=outputs, body_out=body_out, ops=ops,
                                  target=target, sparse_layout=sparse_layout, tensorflow_version=tf.__version__)
        if noise_specs is not None:
            from tflbayes.converters.micro.target import annotate_noise

            annotate_noise(manifest, noise_specs)
        if built.layout is not None:
            manifest["layout"] = built.layout
        if edgetpu is not None:
            from tflbayes._io import sha256_file
            from tflbayes.converters.edgetpu import COMPILER16_TF_VERSION, compile_command, parameter_cache, run_compiler

            manifest["edgetpu"] = {
                "readiness": edgetpu,
                "split": {"batched": "the int8 body may run on the Edge TPU; the float uncertainty head runs on "
                                     "the CPU (head.tflite)",
                          "stochastic": "the deterministic int8 prefix may run on the Edge TPU; sampling (random "
                                        "ops) and the uncertainty head run in float on the CPU (head.tflite)",
                          "members": "members on the Edge TPU, uncertainty on the host",
                          "dirichlet": "the int8 EnD² student may run on the Edge TPU; the float Dirichlet head "
                                       "(digamma) runs on the CPU (head.tflite)",
                          "single_pass": "the int8 network may run on the Edge TPU; the float uncertainty head "
                                         "(ensemble head of the S outputs / Laplace head and link) runs on the CPU "
                                         "(head.tflite)"}[mode],
                "compiler": f"edgetpu_compiler 16 (op versions of TF {COMPILER16_TF_VERSION})",
                # one co-compilation of every body file: members share the on-chip parameter cache
                "compile": run_compiler([tmp / n for n in edgetpu], tmp, final_dir=out),
                "command": compile_command([Path(out) / n for n in edgetpu], Path(out)),
                "parameter_cache": parameter_cache(edgetpu, list(edgetpu)),
            }
            if manifest["edgetpu"]["compile"]["compiled"]:  # the compiled files run only when checksummed
                for st in manifest["stages"]:
                    if st["kind"] == "graph" and st.get("edgetpu_file"):
                        st["edgetpu_sha256"] = sha256_file(tmp / st["edgetpu_file"])
                    elif st["kind"] == "members":
                        st["edgetpu_files"] = [f.replace(".tflite", "_edgetpu.tflite") for f in st["files"]]
                        st["edgetpu_sha256"] = [sha256_file(tmp / f) for f in st["edgetpu_files"]]
        runtime = "tflm" if target == "micro" else "litert"
        if target == "micro":  # every graph in TFLite Micro's interpreter: smallest arena, flatbuffer bytes
            from tflbayes.converters.micro.target import measure_micro

            manifest["micro"] = measure_micro(tmp, manifest)
        write_manifest(tmp, manifest)
        bundle = Bundle(tmp, runtime=runtime)
        if verify:
            report = verify_bundle(bundle, posterior, xv, precision)
            report["data"] = xv_source
            report["runtime"] = runtime
            if int8:  # int8 outputs differ by an LSB between XNNPACK and the reference kernels: report both
                from tflbayes.converters.kernels import verify_kernels

                report["kernels"] = verify_kernels(tmp, posterior, xv, precision, runtime, report)
            manifest["verification"] = report
        else:
            manifest["verification"] = {"passed": None, "skipped": True}
        manifest["thresholds"] = _calibrate(bundle, calibration, coverage)  # on the target's kernels
        if target == "micro":
            from tflbayes.converters.micro.target import write_micro_folder

            write_micro_folder(tmp, manifest)
        write_manifest(tmp, manifest)
    return Bundle(out)
