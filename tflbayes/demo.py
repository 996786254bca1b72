"""The end-to-end demo behind ``make demo`` / ``tflbayes demo``."""
from __future__ import annotations

import time
from pathlib import Path

import click

__all__ = ["run_demo", "DEMO_METHODS"]

DEMO_METHODS = (
    ("mc_dropout", {"rate": 0.25}),
    ("variational", {}),
    ("deep_ensemble", {"members": 5}),
)
# (posterior, mode, precision) converted to LiteRT and run on the interpreter
DEMO_BUNDLES = (
    ("mc_dropout", "stochastic", "float32"),
    ("variational", "stochastic", "float32"),
    ("deep_ensemble", "batched", "float32"),
    ("deep_ensemble", "members", "float32"),
    ("deep_ensemble", "batched", "int8"),
    ("end2_student", "dirichlet", "float32"),
)


def run_demo(out="demo_out", data="digits", epochs=15, verbose=1) -> dict:
    """Train each demo method and an EnD² student of the ensemble, evaluate all side by side with
    OOD noise, convert them to LiteRT bundles, run and time those, write plots and JSON."""
    import tflbayes as tb
    from tflbayes._io import write_json
    from tflbayes.architectures import builder
    from tflbayes.reporting import QUALITY_COLUMNS, print_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = tb.data.load(data)
    x_ood = tb.data.ood(ds, "noise", seed=1)
    build = builder("cnn", ds.input_shape, ds.num_classes)
    rows, plots_in, posteriors = [], {}, {}
    for method, options in DEMO_METHODS:
        click.echo(f"== training {method} on {data} ({epochs} epochs)")
        t0 = time.perf_counter()
        post = tb.fit(build, ds, method=method, epochs=epochs, verbose=verbose, **options)
        train_s = time.perf_counter() - t0
        post.save(out / "posteriors" / method)
        pred_in, pred_ood = post.predict(ds.x_test), post.predict(x_ood)
        metrics = tb.metrics.evaluate_prediction(pred_in, ds.y_test, pred_ood)
        rows.append({"name": method, "S": post.num_samples, "train_s": train_s, **metrics})
        plots_in[method] = (pred_in, pred_ood, ds.y_test)
        posteriors[method] = post
    click.echo("== distilling the deep ensemble into one EnD² Dirichlet student")
    t0 = time.perf_counter()
    student = tb.distill(posteriors["deep_ensemble"], ds.x_train, method="end2", epochs=20, verbose=0)
    train_s = time.perf_counter() - t0
    student.save(out / "posteriors" / "end2_student")
    pred_in, pred_ood = student.predict(ds.x_test), student.predict(x_ood)
    rows.append({"name": "end2_student", "S": 1, "train_s": train_s,
                 **tb.metrics.evaluate_prediction(pred_in, ds.y_test, pred_ood)})
    plots_in["end2_student"] = (pred_in, pred_ood, ds.y_test)
    posteriors["end2_student"] = student
    paths = tb.plots.comparison_plots(plots_in, out / "plots")
    click.echo("")
    print_table(rows, QUALITY_COLUMNS[:1] + [("S", "S"), ("train_s", "train s")] + QUALITY_COLUMNS[1:],
                title=f"{data}: Keras posteriors, test split vs uniform-noise OOD")
    device_rows = _convert_and_run(posteriors, ds, x_ood, out / "bundles")
    click.echo("")
    print_table(device_rows, [("name", "bundle"), ("S", "S"), ("kbytes", "size KB"), ("latency_ms", "ms/input"),
                              *QUALITY_COLUMNS[1:3], QUALITY_COLUMNS[4], QUALITY_COLUMNS[-1]],
                title="the same posteriors as LiteRT bundles (batch 1, 1 thread, median of interleaved invokes)")
    write_json(out / "results.json", {"data": data, "epochs": epochs, "results": rows, "bundles": device_rows})
    click.echo(f"\nwrote posteriors to {out / 'posteriors'}, bundles to {out / 'bundles'}, {len(paths)} plots to "
               f"{out / 'plots'}, tables to {out / 'results.json'}")
    return {"rows": rows, "bundles": device_rows, "plots": paths}


def _convert_and_run(posteriors, ds, x_ood, folder) -> list:
    """Convert each demo posterior, run the bundle on the LiteRT interpreter, time it."""
    import tflbayes as tb
    from tflbayes.bench.timing import interleaved, summarize

    bundles, rows = {}, []
    for method, mode, precision in DEMO_BUNDLES:
        name = f"{method}-{mode}-{precision}"
        click.echo(f"== converting {name}")
        post = posteriors[method]
        bundles[name] = tb.convert(post, folder / name, mode=mode, precision=precision,
                                   representative_data=ds.x_train[:300], calibration=(ds.x_test, ds.y_test),
                                   num_samples=16 if mode == "stochastic" else None)
    one = ds.x_test[:1]
    timed = interleaved({n: (lambda b=tb.load_bundle(b.path, num_threads=1): b.run(one)) for n, b in bundles.items()},
                        rounds=100, warmup=10)
    for name, b in bundles.items():
        metrics = tb.metrics.evaluate_prediction(b.predict(ds.x_test), ds.y_test, b.predict(x_ood))
        rows.append({"name": name, "S": b.num_samples, "kbytes": b.size_bytes / 1024,
                     "latency_ms": summarize(timed[name])["median_ms"], **metrics})
    return rows
