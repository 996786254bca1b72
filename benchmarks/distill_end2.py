"""EnD²: one Dirichlet student against the 10-member ensemble it was distilled from (digits, CNN).

Trains a deep ensemble of the built-in CNN on the bundled digits data, distills it with
``tb.distill(ensemble, x_train, method="end2")`` (proxy-Dirichlet targets by default), converts the
student with its Dirichlet head (``mode="dirichlet"``'s graph) and checks four criteria:

- latency <= 1.1 x one member (LiteRT CPU interpreter, batch 1, one thread, interleaved rounds:
  each round invokes every graph once in a shuffled order; medians after a warm-up). "One member"
  is a single ensemble member converted as tflbayes converts one network: its logits and the
  softmax/entropy head in the graph (``build_batched`` with S = 1). The member's bare logits graph
  (mode ``members``, no softmax) is reported too, as is the full 10-member batched graph;
- test NLL <= 1.10 x the ensemble's;
- OOD AUROC of the epistemic uncertainty (uniform noise, ``tb.data.ood(ds, "noise")``) >=
  the ensemble's - 0.02;
- test accuracy >= the ensemble's - 1 point.

The student's quality is measured on its LiteRT graph (what the device computes); the ensemble's
with Keras (the reference).

Usage::

    python benchmarks/distill_end2.py                    # 10 members, seed 0
    python benchmarks/distill_end2.py --loss nll --seed 1 --json end2.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def _run_graph(blob: bytes, x: np.ndarray) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    run = it.get_signature_runner()
    outs = [run(x=x[i : i + 1]) for i in range(len(x))]
    return {k: np.concatenate([o[k] for o in outs]).astype(np.float64) for k in outs[0]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--student-epochs", type=int, default=40)
    ap.add_argument("--loss", choices=["proxy", "nll"], default="proxy")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3000, help="interleaved timing rounds")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    import tflbayes as tb
    from tflbayes.architectures import cnn
    from tflbayes.converters.graphs.batched import build_batched
    from tflbayes.converters.graphs.dirichlet import build_dirichlet
    from tflbayes.converters.graphs.members import build_member
    from tflbayes.converters.tflite import op_names, to_tflite
    from tflbayes.distill import distill
    from tflbayes.distill.search import interleaved_latency
    from tflbayes.metrics.quality import accuracy, nll, ood_auroc
    from tflbayes.posterior import EnsemblePosterior
    from tflbayes.uncertainty import entropy

    ds = tb.data.load("digits")
    x_ood = tb.data.ood(ds, "noise")
    t0 = time.perf_counter()
    ens = tb.fit(lambda: cnn(ds.input_shape, ds.num_classes), (ds.x_train, ds.y_train), method="deep_ensemble",
                 members=args.members, epochs=args.teacher_epochs, verbose=0, seed=args.seed)
    t_teacher = time.perf_counter() - t0
    t0 = time.perf_counter()
    student = distill(ens, ds.x_train, method="end2", epochs=args.student_epochs, seed=args.seed, loss=args.loss)
    t_student = time.perf_counter() - t0

    one = EnsemblePosterior(ens.model, ens.members[:1], "deep_ensemble", class_names=ens.class_names)
    blobs = {
        "end2 student (dirichlet graph)": to_tflite(build_dirichlet(student, 1), student.model),
        "one member (logits + head)": to_tflite(build_batched(one, batch_size=1, head=True), one.model),
        "one member (bare logits)": to_tflite(build_member(ens, 0, batch_size=1), ens.model),
        f"ensemble ({args.members} members, batched)": to_tflite(build_batched(ens, batch_size=1, head=True),
                                                                 ens.model),
    }
    student_blob = blobs["end2 student (dirichlet graph)"]
    flex = [o for o in op_names(student_blob) if o.startswith("CUSTOM")]
    latency = interleaved_latency(blobs, rounds=args.rounds, warmup=200, x=ds.x_test[:1])

    pe_in, pe_ood = ens.predict(ds.x_test), ens.predict(x_ood)
    s_in, s_ood = _run_graph(student_blob, ds.x_test), _run_graph(student_blob, x_ood)
    probs = s_in["probs"] / s_in["probs"].sum(-1, keepdims=True)
    quality = {
        "ensemble": {"accuracy": accuracy(pe_in.probs, ds.y_test), "nll": nll(pe_in.probs, ds.y_test),
                     "ood_auroc_epistemic": ood_auroc(pe_in.epistemic, pe_ood.epistemic)},
        "student": {"accuracy": accuracy(probs, ds.y_test), "nll": nll(probs, ds.y_test),
                    "ood_auroc_epistemic": ood_auroc(s_in["epistemic"], s_ood["epistemic"])},
        "one member": {"accuracy": accuracy(one.predict(ds.x_test).probs, ds.y_test),
                       "nll": nll(one.predict(ds.x_test).probs, ds.y_test),
                       "ood_auroc_total": ood_auroc(entropy(one.predict(ds.x_test).probs),
                                                    entropy(one.predict(x_ood).probs))},
    }
    e, s = quality["ensemble"], quality["student"]
    lat_s = latency["end2 student (dirichlet graph)"]
    lat_m = latency["one member (logits + head)"]
    checks = {
        "latency <= 1.1 x one member": (lat_s / lat_m, lat_s <= 1.1 * lat_m),
        "NLL <= 1.10 x ensemble": (s["nll"] / e["nll"], s["nll"] <= 1.10 * e["nll"]),
        "OOD AUROC (epistemic) >= ensemble - 0.02": (s["ood_auroc_epistemic"] - e["ood_auroc_epistemic"],
                                                     s["ood_auroc_epistemic"] >= e["ood_auroc_epistemic"] - 0.02),
        "accuracy >= ensemble - 1 point": (s["accuracy"] - e["accuracy"], s["accuracy"] >= e["accuracy"] - 0.01),
        "student graph has builtin ops only": (len(flex), not flex),
    }

    print(f"digits CNN, {args.members}-member ensemble ({args.teacher_epochs} epochs, {t_teacher:.0f} s) -> EnD² "
          f"student (loss={args.loss}, {args.student_epochs} epochs, {t_student:.0f} s), seed {args.seed}")
    print("\nLiteRT latency, batch 1, 1 thread, median of", args.rounds, "interleaved rounds:")
    bare = latency["one member (bare logits)"]
    for name, us in latency.items():
        print(f"  {name:<40} {us:8.2f} µs  ({us / lat_m:5.2f} x one member; {us / bare:5.2f} x bare logits)")
    print("\nquality (test split; OOD = uniform noise):")
    for name, q in quality.items():
        print(f"  {name:<12} " + "  ".join(f"{k}={v:.4f}" for k, v in q.items()))
    print("\ncriteria:")
    for name, (value, ok) in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}  ({value:.4g})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "latency_us": latency, "quality": quality,
                       "checks": {k: {"value": float(v), "passed": bool(ok)} for k, (v, ok) in checks.items()}},
                      f, indent=2)
    return 0 if all(ok for _, ok in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
