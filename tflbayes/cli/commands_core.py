"""``tflbayes train | evaluate | compress | demo``."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tflbayes.architectures import ARCHITECTURES
from tflbayes.cli._common import (
    check_output_dir, check_output_file, check_output_folder, friendly_errors, parse_options, print_table,
)
from tflbayes.reporting import QUALITY_COLUMNS  # shared with the demo

__all__ = ["COMMANDS", "train", "evaluate", "compress", "demo", "QUALITY_COLUMNS", "EPOCHS"]


class _Epochs(click.ParamType):
    """``auto`` or an integer (its range is checked by tb.fit / tb.distill)."""

    name = "auto|INTEGER"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value == "auto":
            return value
        try:
            return int(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor an integer.", param, ctx)


#: The ``--epochs`` type of ``train`` and ``distill``.
EPOCHS = _Epochs()


def _method_choices():
    from tflbayes.methods import METHODS

    return sorted(METHODS)


@click.command()
@click.option("--data", "data", default="digits", show_default=True, help="digits, mnist, or a path to an .npz")
@click.option("--method", default="deep_ensemble", show_default=True, help="training method (see tflbayes.METHODS)")
@click.option("--arch", type=click.Choice(list(ARCHITECTURES)), default="cnn", show_default=True)
@click.option("--members", type=int, default=None, help="deep_ensemble: number of members")
@click.option("--rate", type=float, default=None, help="mc_dropout: dropout rate")
@click.option("--estimator", default=None, help="variational: flipout | reparameterization | local_reparameterization")
@click.option("--layers", default=None,
              help="stochastic layers: auto, head, all, last, or comma-separated layer names")
@click.option("--option", "-o", "extra", multiple=True, help="any other method option as key=value (repeatable)")
@click.option("--holdout", default=None, help="comma-separated classes left out of training (OOD protocol 'heldout')")
@click.option("--epochs", type=EPOCHS, default="auto", show_default=True,
              help="'auto': train until a held-out NLL stops improving (samplers: a chain sized to num_samples)")
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), default=None, help="posterior folder (default runs/<data>-<method>)")
@click.option("--quiet", is_flag=True, help="no progress bars")
@friendly_errors
def train(data, method, arch, members, rate, estimator, layers, extra, holdout, epochs, batch_size,
          learning_rate, seed, out, quiet):
    """Train a posterior on a data set and save it as a posterior folder."""
    import tflbayes as tb
    from tflbayes.architectures import builder

    out = out or f"runs/{Path(str(data)).stem}-{method}"
    check_output_dir(out, "--out")  # before training: a path that cannot be written fails now
    options = parse_options(extra)
    if layers is not None and layers not in ("auto", "head", "all", "last"):
        layers = [name.strip() for name in layers.split(",") if name.strip()]
    for key, value in (("members", members), ("rate", rate), ("estimator", estimator), ("layers", layers)):
        if value is not None:
            options[key] = value
    hold = [h.strip() for h in holdout.split(",")] if holdout else None
    hold = [int(h) if h.isdigit() else h for h in hold] if hold else None
    ds = tb.data.load(data, holdout_classes=hold)
    build = builder(arch, ds.input_shape, ds.num_classes)
    t0 = time.perf_counter()
    post = tb.fit(build, ds, method=method, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                  seed=seed, verbose=0 if quiet else 1, **options)
    seconds = time.perf_counter() - t0
    if tb.METHODS[method].sampling and post.num_samples >= 2:
        from tflbayes.methods.sampling import diagnostics

        n = min(512, len(ds.x_test))
        d = diagnostics(post, ds.x_test[:n], ds.y_test[:n])
        click.echo(f"{method}: ESS {d['ess']:.1f} of {post.num_samples} samples, R-hat {d['rhat']:.3f} "
                   f"(predictive log-likelihood on {n} test inputs)")
    post.options.setdefault("data", {"name": ds.name, "holdout_classes": list(ds.holdout_classes)})
    post.options["arch"] = arch
    post.save(out)
    acc = float((post.predict(ds.x_test).label == ds.y_test).mean())
    click.echo(f"trained {method} (S={post.num_samples}) in {seconds:.1f} s, test accuracy {acc:.4f}; wrote {out}")


@click.command()
@click.argument("posterior", type=click.Path())
@click.option("--data", default="digits", show_default=True, help="digits, mnist, or an .npz (its test split is used)")
@click.option("--ood", "ood_kinds", multiple=True, default=("noise",), show_default=True,
              help="OOD protocol(s): noise, rotate, heldout, other")
@click.option("--num-samples", type=int, default=None, help="S for stochastic posteriors")
@click.option("--plots", type=click.Path(), default=None, help="folder for reliability diagrams and histograms")
@click.option("--json", "json_out", type=click.Path(), default=None, help="write the metrics here as JSON")
@friendly_errors
def evaluate(posterior, data, ood_kinds, num_samples, plots, json_out):
    """Evaluate a posterior folder: accuracy, NLL, Brier, ECE, misclassification and OOD AUROC."""
    import tflbayes as tb

    if json_out:
        check_output_file(json_out, "--json")
    if plots:
        check_output_folder(plots, "--plots")
    post = tb.load(posterior)
    hold = (post.options.get("data") or {}).get("holdout_classes") or None
    ds = tb.data.load(data, holdout_classes=hold)
    rows, report = [], {}
    pred_in = post.predict(ds.x_test, num_samples=num_samples)
    for kind in ood_kinds:
        x_ood = tb.data.ood(ds, kind)
        pred_ood = post.predict(x_ood, num_samples=num_samples)
        metrics = tb.metrics.evaluate_prediction(pred_in, ds.y_test, pred_ood)
        report[kind] = metrics
        rows.append({"name": f"{Path(posterior).name} vs {kind}", **metrics})
        if plots:
            tb.plots.comparison_plots({f"{Path(posterior).name}-{kind}": (pred_in, pred_ood, ds.y_test)}, plots)
    print_table(rows, QUALITY_COLUMNS)
    if json_out:
        from tflbayes._io import write_json

        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        write_json(json_out, {"posterior": str(posterior), "data": data, "metrics": report})
    written = [p for p in (json_out, plots) if p]
    click.echo(f"evaluated {posterior}" + (f"; wrote {', '.join(written)}" if written else ""))


@click.command()
@click.option("--out", type=click.Path(), default="demo_out", show_default=True, help="folder for posteriors, plots, JSON")
@click.option("--data", default="digits", show_default=True)
@click.option("--epochs", type=int, default=15, show_default=True)
@click.option("--quiet", is_flag=True)
@friendly_errors
def demo(out, data, epochs, quiet):
    """Train MC dropout, VI and a deep ensemble on bundled data and compare them side by side."""
    from tflbayes.demo import run_demo

    check_output_folder(out, "--out")
    run_demo(out, data=data, epochs=epochs, verbose=0 if quiet else 1)


@click.command()
@click.argument("posterior", type=click.Path())
@click.option("--method", type=click.Choice(["magnitude", "shared_mask", "snr", "structured", "2:4", "qat"]),
              default="magnitude", show_default=True,
              help="pruning method, or qat (quantization-aware fine-tuning for int8)")
@click.option("--sparsity", type=float, default=None, help="fraction of kernel weights to remove, in [0, 1) "
              "(structured: of units per layer; 2:4: fixed at 0.5)")
@click.option("--scope", type=click.Choice(["layer", "global"]), default="layer", show_default=True)
@click.option("--criterion", type=click.Choice(["snr", "magnitude"]), default="snr", show_default=True,
              help="snr only: rank by |mu|/sigma or by |mu|")
@click.option("--data", default=None, help="digits, mnist or an .npz: training data for the methods that train "
              "(shared_mask, structured, qat; optional for 2:4)")
@click.option("--option", "-o", "extra", multiple=True, help="any other method option as key=value (repeatable)")
@click.option("--out", type=click.Path(), default=None, help="posterior folder (default <posterior>-<method>[-<sparsity>])")
@friendly_errors
def compress(posterior, method, sparsity, scope, criterion, data, extra, out):
    """Prune or quantization-aware fine-tune a posterior folder; writes a new posterior folder."""
    import tflbayes as tb

    if out:
        check_output_dir(out, "--out")
    post = tb.load(posterior)
    options = parse_options(extra)
    xy = None
    if data is not None:
        hold = (post.options.get("data") or {}).get("holdout_classes") or None
        ds = tb.data.load(data, holdout_classes=hold)
        xy = (ds.x_train, ds.y_train)
    if method == "qat":
        if xy is None:
            raise click.UsageError("--method qat fine-tunes: pass --data digits|mnist|file.npz.")
        result = tb.compress.quantization_aware(post, data=xy, **options)
    else:
        if method in ("shared_mask", "structured") and xy is None:
            raise click.UsageError(f"--method {method} trains: pass --data digits|mnist|file.npz.")
        if sparsity is None and method != "2:4":
            raise click.UsageError(f"--method {method} needs --sparsity (a fraction in [0, 1), e.g. 0.9).")
        kw = {"criterion": criterion} if method == "snr" else {}
        result = tb.compress.prune(post, sparsity, method=method, scope=scope, data=xy, **kw, **options)
    suffix = method.replace(":", "of") + ("" if sparsity is None or method == "qat" else f"-{sparsity:g}")
    out = out or f"{str(posterior).rstrip('/')}-{suffix}"
    result.save(out)
    achieved = tb.compress.sparsity(result)["overall"]
    layout = " (shared-mask layout)" if getattr(result, "mask", None) is not None else ""
    click.echo(f"{method}: {type(result).__name__} S={result.num_samples}, kernel sparsity {achieved:.4f}, "
               f"{result.model.count_params()} weights per member; wrote {out}{layout}")


COMMANDS = [train, evaluate, compress, demo]
