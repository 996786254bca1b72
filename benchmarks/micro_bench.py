"""Microcontroller bundles of the digits CNN: flash, arena and TFLite Micro invoke time vs one network.

For the digits CNN (``tflbayes.architectures.cnn``) this trains a deep ensemble (S=5), MC dropout
(S=8 per invoke; dropout in every layer, the default, and before the last layer only) and an EnD² student of the ensemble, converts each to an int8 ``target="micro"``
bundle (the ensemble as ``members`` and as ``batched``), and the first member alone as the
single-network reference. Per bundle:

- **flash**: bytes of the flatbuffers the device stores (all graphs; ``head.tflite`` of an int8
  bundle included, although the C library's ``tb_decompose_logits`` can replace it);
- **arena**: the largest per-graph TFLite Micro arena (graphs run one after another share it),
  measured by bisection at conversion (``manifest["micro"]``);
- **invoke time** in TFLite Micro's Python interpreter (x86 reference kernels, so only the ratios
  mean something for an MCU): per prediction, the invokes of every graph of the pipeline (S member
  invokes for ``members``; the noise inputs filled beforehand, their count reported as
  ``noise_numbers_per_prediction``: the device draws them with ``tb_rng_*``), median over
  ``--reps`` interleaved rounds (:func:`tflbayes.bench.timing.interleaved`); ratio = time / the
  single network's.

Also the C99 library's code size (arm-none-eabi-gcc -Os, Cortex-M4F and M0+) where the toolchain
is installed. One run; results in ``benchmarks/results/micro_bench.{json,md}``.

Run:  .venv/bin/python benchmarks/micro_bench.py [--epochs 4] [--reps 200]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tflbayes as tb
from tflbayes.architectures import builder
from tflbayes.bench.timing import interleaved

OUT = Path(__file__).resolve().parent / "results"


class PipelineInvoke:
    """One prediction's TFLite Micro invokes for a bundle (inputs set once, as on a device)."""

    def __init__(self, bundle, x):
        from tflbayes.runtime.manifest import stage_files
        from tflbayes.runtime.tflm import TflmGraph

        self.graphs, self.fills = [], []
        for st in bundle.manifest["stages"]:
            for f in stage_files(st):
                g = TflmGraph(bundle.path / f, bundle.manifest, bundle.noise)
                for name, det in g.inputs.items():  # feed plausible values once (x, or zeros for features)
                    v = x if name == "x" else np.zeros(det["shape"], np.float32)
                    g.tflm.set_input(np.ascontiguousarray(g.quantize(v, det)), det["index"])
                for e in g.noise:  # noise filled once: the timing is TFLite Micro's, not the Python PRNG's
                    g.tflm.set_input(bundle.noise.fill(e["distribution"], e["shape"]), e["index"])
                self.graphs.append(g)
        self.noise_numbers = sum(int(np.prod(e["shape"])) for g in self.graphs for e in g.noise)

    def __call__(self):
        for g in self.graphs:
            g.tflm.invoke()
            for det in g.outputs.values():
                g.tflm.get_output(det["index"])


def library_size() -> dict:
    from tflbayes.converters.micro import toolchain

    if toolchain.tool_missing("arm-none-eabi-gcc"):
        return {"skipped": toolchain.tool_missing("arm-none-eabi-gcc")}
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for cpu in sorted(toolchain.CORTEX):
            obj = toolchain.compile_cortex(cpu, [toolchain.SOURCE_DIR / "tflbayes_uq.c"], Path(d) / f"{cpu}.o")
            out[cpu] = toolchain.code_size(obj)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default=str(OUT))
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)

    data = tb.data.load("digits")
    cnn = builder("cnn", data.input_shape, data.num_classes)
    rep, cal = data.x_train[:300], (data.x_test, data.y_test)
    t0 = time.time()
    ens = tb.fit(cnn, data, method="deep_ensemble", members=5, epochs=args.epochs, verbose=0, seed=0)
    mcd = tb.fit(cnn, data, method="mc_dropout", epochs=args.epochs, verbose=0, seed=0, num_samples=8)
    mcd_last = tb.fit(cnn, data, method="mc_dropout", layers="last", epochs=args.epochs, verbose=0, seed=0,
                      num_samples=8)
    student = tb.distill(ens, data.x_train, method="end2", verbose=0, seed=0)
    from tflbayes.posterior import EnsemblePosterior

    single = EnsemblePosterior(ens.model, ens.members[:1], ens.method, ens.options, ens.class_names)
    train_s = time.time() - t0
    cases = {"single network": (single, "members"), "ensemble S=5 members": (ens, "members"),
             "ensemble S=5 batched": (ens, "batched"), "MC dropout S=8": (mcd, "stochastic"),
             "MC dropout S=8, last layer": (mcd_last, "stochastic"),
             "EnD² student": (student, "dirichlet")}
    rows, runners = {}, {}
    x = data.x_test[:1]
    with tempfile.TemporaryDirectory() as d:
        for name, (post, mode) in cases.items():
            t = time.time()
            b = tb.convert(post, Path(d) / name.replace(" ", "_"), mode=mode, precision="int8", target="micro",
                           representative_data=rep, calibration=cal)
            m = b.manifest
            acc = float(np.mean(np.array(tb.load_bundle(b.path, runtime="tflm").predict(data.x_test[:200]).label)
                                == data.y_test[:200]))
            rows[name] = {"mode": mode, "S": m["num_samples"], "flash_bytes": m["micro"]["flash_bytes"],
                          "arena_bytes": m["micro"]["arena_bytes_max"],
                          "graphs": {f: {k: g[k] for k in ("arena_bytes", "flatbuffer_bytes")}
                                     for f, g in m["micro"]["graphs"].items()},
                          "noise_inputs": len((m.get("noise") or {}).get("inputs", [])),
                          "tflm_accuracy_200": acc, "convert_s": round(time.time() - t, 1),
                          "verification": {k: m["verification"]["kernels"][k]["passed"]
                                           for k in ("xnnpack", "reference", "tflm")}}
            runners[name] = PipelineInvoke(tb.load_bundle(b.path, runtime="tflm"), x)
            rows[name]["noise_numbers_per_prediction"] = runners[name].noise_numbers
        times = interleaved(runners, rounds=args.reps, warmup=20, shuffle_seed=0)
    base = float(np.median(times["single network"]))
    for name in rows:
        med = float(np.median(times[name]))
        rows[name].update(invoke_ms=med * 1e3, invoke_ratio=med / base,
                          flash_ratio=rows[name]["flash_bytes"] / rows["single network"]["flash_bytes"],
                          arena_ratio=rows[name]["arena_bytes"] / rows["single network"]["arena_bytes"])
    result = {"command": " ".join([".venv/bin/python benchmarks/micro_bench.py", *argv]), "epochs": args.epochs,
              "reps": args.reps, "train_s": round(train_s, 1), "library_code_bytes": library_size(), "bundles": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "micro_bench.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Microcontroller bundles (digits CNN, int8, target='micro')", "",
             f"Command: `.venv/bin/python benchmarks/micro_bench.py{' ' + ' '.join(argv) if argv else ''}` "
             f"(one run; {args.epochs} epochs; {args.reps} interleaved timing rounds in TFLite Micro's Python "
             "interpreter on x86: ratios, not MCU milliseconds).", "",
             "| bundle | S | flash bytes | ×1 | arena bytes | ×1 | TFLM invoke ms | ×1 | noise numbers | TFLM acc (200) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['S']} | {r['flash_bytes']} | {r['flash_ratio']:.2f} | {r['arena_bytes']} | "
                     f"{r['arena_ratio']:.2f} | {r['invoke_ms']:.3f} | {r['invoke_ratio']:.2f} | {r['noise_numbers_per_prediction']} | "
                     f"{r['tflm_accuracy_200']:.3f} |")
    lib = result["library_code_bytes"]
    lines += ["", "C99 library `tflbayes_uq.c` (arm-none-eabi-gcc -Os): " + ", ".join(
        f"{cpu} {v['text']} B text" for cpu, v in lib.items() if isinstance(v, dict)) if "skipped" not in lib else
        f"C99 library size: {lib['skipped']}", ""]
    (out / "micro_bench.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
