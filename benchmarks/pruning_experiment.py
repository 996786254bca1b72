"""Does an ensemble tolerate more pruning and quantization than a single network? (survey §3.1)

On the bundled digits data (8x8x1, 10 classes; 1,437 training / 360 test images; `--data mnist`: the
MNIST sample, 28x28x1, 4,000 / 1,000) with the built-in CNN (Conv16-pool-Conv32-Dense64-logits) it
measures accuracy, NLL, ECE and OOD AUROC
(uniform noise; epistemic = mutual information, and total entropy) against the sparsity of the
kernels, 0 to 99 %, for

(a) one network (member 0 of the ensemble), one-shot magnitude pruning, and (a') the same network
    pruned iteratively with fine-tuning (TF-MOT, the mask search of (c): the fair single-network
    baseline for (c), which also trains after pruning);
(b) a 10-member deep ensemble, every member pruned on its own (one-shot magnitude, no fine-tuning);
(c) prune-then-sample: one mask found by TF-MOT iterative pruning with fine-tuning of one network
    (6 + 6 epochs), then 10 samples inside it by SGHMC (10 epochs, when ``tflbayes.methods.sampling``
    is installed) and, at 50/80/90/95 %, by the fallback sampler: 10 perturbed copies of the
    pruned network fine-tuned 3 epochs restricted to the mask ("mask ensemble");
(d) mean-field VI (local reparameterization, initial σ 0.05, 40 epochs), pruned by signal-to-noise
    |μ|/σ and, for comparison, by |μ|; S=32 samples at prediction time.

Then int8: float32 vs post-training quantization (PTQ) vs quantization-aware fine-tuning (QAT, 2
epochs at 1e-4) of the single network and the ensemble, through ``tb.convert`` (mode ``batched``,
verified), metrics measured on the LiteRT bundles. And the device cost at S=10 and 90 % sparsity:
bytes of the dense float32 ``batched`` bundle, of LiteRT's own sparse format per member
(``EXPERIMENTAL_SPARSITY``, the per-member baseline) for (b) and (c), and of the shared-mask
``batched`` bundle (indices once + values per member, SCATTER_ND in the graph); the latency cost of
densifying in the graph (interleaved timing, batch 1, one thread, XNNPACK and builtin kernels);
and the posterior folder sizes. Pruning scope: per layer (the default; ``--scope global``).

Writes ``benchmarks/results/pruning_experiment.json`` and ``pruning_experiment.png``. About 5-8
minutes on 2 shared CPU cores (``--quick``: a 1-minute smoke run, not the committed numbers).

Usage::

    python benchmarks/pruning_experiment.py
    python benchmarks/pruning_experiment.py --scope global --out /tmp/global
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import tflbayes as tb
import tflbayes.compress as compress
from tflbayes._keras import keras, tf
from tflbayes.architectures import cnn
from tflbayes.bench.timing import interleaved, summarize
from tflbayes.compress.shared_mask import sghmc_available, find_mask
from tflbayes.converters.graphs.batched import build_batched
from tflbayes.converters.tflite import to_tflite
from tflbayes.posterior import EnsemblePosterior
from tflbayes.uncertainty import prediction_from_samples

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
MASK_ENSEMBLE_AT = (0.5, 0.8, 0.9, 0.95)  # the slower fallback sampler, at fewer points
S = 10
METRICS = ("accuracy", "nll", "ece", "ood_auroc_epistemic", "ood_auroc_total")


def metrics(samples_in, samples_ood, y) -> dict:
    m = tb.metrics.evaluate_prediction(prediction_from_samples(samples_in), y, prediction_from_samples(samples_ood))
    return {k: m[k] for k in METRICS}


def bundle_metrics(bundle, x, y, x_ood) -> dict:
    m = tb.metrics.evaluate(bundle, x, y, x_ood=x_ood)
    return {k: m[k] for k in METRICS}


def posterior_samples(post, x, x_ood, num_samples=None):
    kw = {} if num_samples is None else {"num_samples": num_samples}
    return post.sample_probs(x, **kw), post.sample_probs(x_ood, **kw)


def log(t0, msg):
    print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)


def sweep(args, ds, x_ood, ens, vi, t0) -> dict:
    x, y = ds.x_test, ds.y_test
    curves = {k: {} for k in ("single", "single_finetuned", "ensemble", "shared_mask_sghmc", "shared_mask_ensemble",
                              "vi_snr", "vi_magnitude")}
    sghmc = sghmc_available()
    data = (ds.x_train, ds.y_train)
    for sp in args.sparsities:
        key = f"{sp:.2f}"
        pruned = compress.prune(ens, sp, scope=args.scope)
        si, so = posterior_samples(pruned, x, x_ood)
        curves["ensemble"][key] = {**metrics(si, so, y), "sparsity": compress.sparsity(pruned)["overall"]}
        single = metrics(si[:1], so[:1], y)
        single["ood_auroc_epistemic"] = None  # one network has no epistemic part (mutual information 0)
        curves["single"][key] = {**single,
                                 "sparsity": compress.sparsity(EnsemblePosterior(pruned.model, pruned.members[:1]))["overall"]}
        weights, _ = find_mask(ens.model, ens.members[0], ds.x_train, ds.y_train, sp, args.scope,
                               prune_epochs=args.prune_epochs, finetune_epochs=args.finetune_epochs,
                               learning_rate=2e-3, batch_size=64)
        one = EnsemblePosterior(ens.model, [weights])
        si, so = posterior_samples(one, x, x_ood)
        curves["single_finetuned"][key] = {**metrics(si, so, y), "ood_auroc_epistemic": None,
                                           "sparsity": compress.sparsity(one)["overall"]}
        for crit in ("snr", "magnitude"):
            p = compress.prune(vi, sp, method="snr", criterion=crit, scope=args.scope)
            tf.random.set_seed(0)
            si, so = posterior_samples(p, x, x_ood, num_samples=32)
            curves[f"vi_{crit}"][key] = {**metrics(si, so, y), "sparsity": compress.sparsity(p)["overall"]}
        samplers = (["sghmc"] if sghmc else []) + (["ensemble"] if (sp in MASK_ENSEMBLE_AT or not sghmc) else [])
        for sampler in samplers:
            opts = dict(sampler=sampler, prune_epochs=args.prune_epochs, finetune_epochs=args.finetune_epochs,
                        members=S)
            if sampler == "sghmc":
                opts.update(sample_epochs=args.sghmc_epochs, sampler_options={"burn_in": min(2 * 23, args.sghmc_epochs * 23 // 2)})
            else:
                opts.update(sample_epochs=args.mask_epochs)
            sm = compress.prune(ens, sp, method="shared_mask", data=data, scope=args.scope, **opts)
            si, so = posterior_samples(sm, x, x_ood)
            curves[f"shared_mask_{sampler}"][key] = {**metrics(si, so, y), "sparsity": compress.sparsity(sm)["overall"]}
            if abs(sp - 0.9) < 1e-9 and sampler == ("sghmc" if sghmc else "ensemble"):
                args._sm90 = sm
            if abs(sp - 0.9) < 1e-9 and sampler == "ensemble":
                args._sm90_ens = sm
        row = {k: curves[k].get(key, {}) for k in curves}
        log(t0, f"sparsity {sp:.2f}: " + ", ".join(
            f"{k} acc {v['accuracy']:.3f} nll {v['nll']:.3f} auroc {v['ood_auroc_epistemic'] or 0:.3f}"
            for k, v in row.items() if v))
        args._pruned90 = pruned if abs(sp - 0.9) < 1e-9 else getattr(args, "_pruned90", None)
    return curves


def quantization(args, ds, x_ood, ens, t0, out_dir) -> dict:
    x, y = ds.x_test, ds.y_test
    rep = ds.x_train[:300]
    res = {}
    single = EnsemblePosterior(ens.model, ens.members[:1], ens.method, ens.options, ens.class_names)
    for name, post in (("single", single), ("ensemble", ens)):
        q = compress.quantization_aware(post, data=(ds.x_train, ds.y_train), epochs=args.qat_epochs,
                                        learning_rate=1e-4)
        rows = {}
        for label, p, precision in (("float32", post, "float32"), ("int8_ptq", post, "int8"),
                                    ("int8_qat", q, "int8")):
            b = tb.convert(p, out_dir / f"{name}_{label}", precision=precision, representative_data=rep,
                           calibration=(x, y))
            rows[label] = {**bundle_metrics(b, x, y, x_ood), "bytes": b.size_bytes,
                           "verified": b.manifest["verification"]["passed"]}
            if post.num_samples == 1:  # one network: no epistemic part (its AUROC would be noise)
                rows[label]["ood_auroc_epistemic"] = None
        f32 = rows["float32"]
        for label in ("int8_ptq", "int8_qat"):
            r = rows[label]
            r["bytes_ratio"] = r["bytes"] / f32["bytes"]
            r["nll_change"] = r["nll"] / f32["nll"] - 1
            if f32["ood_auroc_epistemic"] is not None:
                r["ood_auroc_epistemic_change"] = r["ood_auroc_epistemic"] - f32["ood_auroc_epistemic"]
        res[name] = rows
        log(t0, f"int8 {name}: " + ", ".join(f"{k} nll {v['nll']:.4f} bytes {v['bytes']}" for k, v in rows.items()))
    e = res["ensemble"]
    best = min(("int8_ptq", "int8_qat"), key=lambda k: e[k]["nll"])
    res["targets"] = {
        "int8_bytes_ratio<=0.27": {"ptq": e["int8_ptq"]["bytes_ratio"], "qat": e["int8_qat"]["bytes_ratio"],
                                   "met": e[best]["bytes_ratio"] <= 0.27},
        "int8_nll_change<=+3%": {"ptq": e["int8_ptq"]["nll_change"], "qat": e["int8_qat"]["nll_change"],
                                 "met": min(e["int8_ptq"]["nll_change"], e["int8_qat"]["nll_change"]) <= 0.03},
        "int8_ood_auroc_change>=-0.01": {"ptq": e["int8_ptq"].get("ood_auroc_epistemic_change"),
                                         "qat": e["int8_qat"].get("ood_auroc_epistemic_change"),
                                         "met": max(e["int8_ptq"].get("ood_auroc_epistemic_change", -1),
                                                    e["int8_qat"].get("ood_auroc_epistemic_change", -1)) >= -0.01},
    }
    return res


class _Runner:
    def __init__(self, blob, xnnpack: bool):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.it = Interpreter(model_content=blob, num_threads=1, experimental_op_resolver_type=kind)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]["index"]

    def __call__(self, x):
        self.it.set_tensor(self.inp, x)
        self.it.invoke()


def device_cost(args, ds, ens, pruned90, sm90, sm90_ens, t0, out_dir) -> dict:
    """Bytes and latency at S=10, 90 % sparsity."""
    res = {}
    blob = {}
    blob["dense_float32_ensemble"] = to_tflite(build_batched(ens, member_probs=True), ens.model)
    for name, post in (("per_member_magnitude", pruned90), ("shared_mask", sm90)):
        blob[f"{name}_batched_dense_layout"] = to_tflite(build_batched(post, member_probs=True), post.model)
        sparse_members = compress.sparse_members(post)
        res[f"{name}_litert_sparse_members_bytes"] = sum(len(b) for b in sparse_members.values())
        res[f"{name}_litert_sparse_member0_ops"] = tb.converters.tflite.op_names(sparse_members["member_000.tflite"])
    blob["shared_mask_batched_shared_mask_layout"] = to_tflite(
        build_batched(sm90, member_probs=True, sparse_layout="shared_mask"), sm90.model)
    blob["shared_mask_batched_shared_mask_layout_float16"] = to_tflite(
        build_batched(sm90, member_probs=True, sparse_layout="shared_mask"), sm90.model, "float16")
    blob["per_member_magnitude_batched_union_layout"] = to_tflite(
        build_batched(pruned90, member_probs=True, sparse_layout="shared_mask"), pruned90.model)
    res["bytes"] = {k: len(v) for k, v in blob.items()}
    sm_bytes = len(blob["shared_mask_batched_shared_mask_layout"])
    res["targets"] = {
        "shared_mask_vs_sum_of_per_member_sparse<=0.4": {
            "vs_per_member_magnitude": sm_bytes / res["per_member_magnitude_litert_sparse_members_bytes"],
            "vs_same_shared_mask_members": sm_bytes / res["shared_mask_litert_sparse_members_bytes"],
            "float16_values_vs_per_member_magnitude":
                len(blob["shared_mask_batched_shared_mask_layout_float16"])
                / res["per_member_magnitude_litert_sparse_members_bytes"],
        },
        "shared_mask_vs_dense_float32<=0.15": sm_bytes / len(blob["dense_float32_ensemble"]),
    }
    res["targets"]["shared_mask_vs_sum_of_per_member_sparse<=0.4"]["met"] = (
        res["targets"]["shared_mask_vs_sum_of_per_member_sparse<=0.4"]["vs_per_member_magnitude"] <= 0.4)
    res["targets"]["shared_mask_vs_dense_float32_met"] = res["targets"]["shared_mask_vs_dense_float32<=0.15"] <= 0.15
    # equality of the two layouts on the device
    x1 = ds.x_test[:1]
    from ai_edge_litert.interpreter import Interpreter

    outs = [Interpreter(model_content=blob[k]).get_signature_runner()(x=x1)
            for k in ("shared_mask_batched_dense_layout", "shared_mask_batched_shared_mask_layout")]
    res["layouts_max_abs_diff"] = float(max(np.max(np.abs(outs[0][k] - outs[1][k])) for k in outs[0]))
    # latency: interleaved, batch 1, one thread
    lat = {}
    for xnn in (True, False):
        runners = {k: _Runner(blob[k], xnn) for k in ("shared_mask_batched_dense_layout",
                                                       "shared_mask_batched_shared_mask_layout")}
        members = [_Runner(b, xnn) for b in compress.sparse_members(sm90).values()]
        fns = {k: (lambda r=r: r(x1)) for k, r in runners.items()}
        fns["litert_sparse_members_x10"] = lambda: [m(x1) for m in members]
        t = interleaved(fns, rounds=args.rounds, warmup=20)
        lat["xnnpack" if xnn else "builtin"] = {k: summarize(v) for k, v in t.items()}
    res["latency"] = lat
    # posterior folders
    with tempfile.TemporaryDirectory() as d:
        sm90.save(Path(d) / "sm")
        EnsemblePosterior(sm90.model, sm90.members).save(Path(d) / "dense")
        pruned90.save(Path(d) / "pm")
        res["folder_weights_npz_bytes"] = {
            "shared_mask_layout": (Path(d) / "sm" / "weights.npz").stat().st_size,
            "same_members_dense_layout": (Path(d) / "dense" / "weights.npz").stat().st_size,
            "per_member_magnitude_dense_layout": (Path(d) / "pm" / "weights.npz").stat().st_size,
        }
    nnz = int(sum(m.sum() for m in sm90.mask if m is not None))
    res["nnz_per_member"] = nnz
    res["counts"] = {"shared_mask_2N+NS_numbers": nnz + S * nnz, "coo_3NS_numbers": 3 * S * nnz,
                     "ratio": (nnz + S * nnz) / (3 * S * nnz)}
    log(t0, f"device: bytes {res['bytes']}, targets {res['targets']}")
    log(t0, f"latency: {json.dumps({k: {n: round(v['median_ms'], 4) for n, v in d.items()} for k, d in lat.items()})}")
    return res


def plot(curves, path, scope, data="digits"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"single": "(a) one network, one-shot", "single_finetuned": "(a') one network, iterative + fine-tune",
              "ensemble": "(b) ensemble, pruned per member",
              "shared_mask_sghmc": "(c) shared mask, SGHMC", "shared_mask_ensemble": "(c') shared mask, mask ensemble",
              "vi_snr": "(d) VI, SNR", "vi_magnitude": "(d') VI, |mu|"}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (metric, title) in zip(axes.ravel(), (("accuracy", "accuracy"), ("nll", "NLL (log scale)"),
                                                  ("ece", "ECE"), ("ood_auroc_epistemic",
                                                                   "OOD AUROC (noise, epistemic)"))):
        for k, c in curves.items():
            if not c:
                continue
            m = "ood_auroc_total" if (k.startswith("single") and metric == "ood_auroc_epistemic") else metric
            sp = [float(s) for s in c]
            vals = [c[s][m] if c[s][m] is not None else np.nan for s in c]
            ax.plot([100 * s for s in sp], vals, marker="o", linestyle="--" if m != metric else "-",
                    label=labels[k] + (" (total entropy)" if m != metric else ""))
        ax.set_title(title)
        ax.set_xlabel(f"kernel sparsity (%), scope={scope}")
        if metric == "nll":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[1, 1].legend(fontsize=7)
    fig.suptitle(f"{data} CNN: pruning a single network vs posteriors (S=10; VI S=32)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--scope", default="layer", choices=("layer", "global"))
    ap.add_argument("--data", default="digits", choices=("digits", "mnist"))
    ap.add_argument("--epochs", type=int, default=15, help="ensemble member training epochs")
    ap.add_argument("--vi-epochs", type=int, default=40)
    ap.add_argument("--vi-init-std", type=float, default=0.05)
    ap.add_argument("--prune-epochs", type=int, default=6)
    ap.add_argument("--finetune-epochs", type=int, default=6)
    ap.add_argument("--sghmc-epochs", type=int, default=10)
    ap.add_argument("--mask-epochs", type=int, default=3)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (not the committed numbers)")
    args = ap.parse_args(argv)
    args.sparsities = SPARSITIES
    if args.quick:
        args.sparsities = (0.0, 0.9)
        args.epochs, args.vi_epochs, args.prune_epochs, args.sghmc_epochs, args.mask_epochs = 2, 2, 1, 1, 1
        args.finetune_epochs = 1
        args.qat_epochs, args.rounds = 1, 30
    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = tb.data.load(args.data)
    x_ood = tb.data.ood(ds, "noise", seed=1)
    build = lambda: cnn(ds.input_shape, ds.num_classes)  # noqa: E731
    ens = tb.fit(build, ds, method="deep_ensemble", members=S, epochs=args.epochs, verbose=0, seed=0)
    log(t0, "ensemble trained")
    vi = tb.fit(build, ds, method="variational", epochs=args.vi_epochs, verbose=0, seed=0,
                estimator="local_reparameterization", learning_rate=3e-3, num_samples=32, init_std=args.vi_init_std)
    log(t0, "VI trained")
    curves = sweep(args, ds, x_ood, ens, vi, t0)
    with tempfile.TemporaryDirectory() as d:
        quant = quantization(args, ds, x_ood, ens, t0, Path(d))
        device = device_cost(args, ds, ens, args._pruned90, args._sm90, getattr(args, "_sm90_ens", None), t0,
                             Path(d))
    result = {
        "setup": {"data": f"{args.data}: {len(ds.x_train)} train / {len(ds.x_test)} test, OOD: uniform noise "
                          f"({len(x_ood)})",
                  "architecture": "cnn: Conv16-MaxPool-Conv32-Flatten-Dense64-Dense10, "
                                  f"{ens.model.count_params()} weights",
                  "members": S, "scope": args.scope, "epochs": args.epochs, "vi_epochs": args.vi_epochs,
                  "vi_init_std": args.vi_init_std, "prune_epochs": args.prune_epochs,
                  "finetune_epochs": args.finetune_epochs, "sghmc_epochs": args.sghmc_epochs,
                  "mask_epochs": args.mask_epochs, "qat_epochs": args.qat_epochs, "quick": args.quick,
                  "sghmc_available": sghmc_available(),
                  "tensorflow": tf.__version__, "python": platform.python_version(),
                  "machine": platform.machine(), "seconds": None},
        "curves": curves,
        "quantization": quant,
        "device_s10_sparsity90": device,
    }
    result["setup"]["seconds"] = round(time.time() - t0, 1)
    name = "pruning_experiment" if args.scope == "layer" else f"pruning_experiment_{args.scope}"
    name += "" if args.data == "digits" else f"_{args.data}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(curves, out / f"{name}.png", args.scope, args.data)
    log(t0, f"wrote {out / (name + '.json')} and {out / (name + '.png')}")
    return result


if __name__ == "__main__":
    main()
