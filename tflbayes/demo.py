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


def run_demo(out="demo_out", data="digits", epochs=15, verbose=1) -> dict:
    """Train each demo method, evaluate all side by side with OOD noise, write plots and JSON."""
    import tflbayes as tb
    from tflbayes._io import write_json
    from tflbayes.architectures import builder
    from tflbayes.cli._common import print_table
    from tflbayes.cli.commands_core import QUALITY_COLUMNS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = tb.data.load(data)
    x_ood = tb.data.ood(ds, "noise", seed=1)
    build = builder("cnn", ds.input_shape, ds.num_classes)
    rows, plots_in = [], {}
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
    paths = tb.plots.comparison_plots(plots_in, out / "plots")
    click.echo("")
    print_table(rows, QUALITY_COLUMNS[:1] + [("S", "S"), ("train_s", "train s")] + QUALITY_COLUMNS[1:],
                title=f"{data}: test split vs uniform-noise OOD")
    write_json(out / "results.json", {"data": data, "epochs": epochs, "results": rows})
    click.echo(f"\nwrote posteriors to {out / 'posteriors'}, {len(paths)} plots to {out / 'plots'}, "
               f"table to {out / 'results.json'}")
    return {"rows": rows, "plots": paths}
