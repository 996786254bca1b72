"""``tflbayes calibrate``: temperature scaling of a posterior folder (:func:`tflbayes.calibrate`)."""
from __future__ import annotations

from pathlib import Path

import click

from tflbayes.cli._common import check_output_dir, friendly_errors

__all__ = ["COMMANDS", "calibrate"]


@click.command()
@click.argument("posterior", type=click.Path())
@click.option("--data", default="digits", show_default=True,
              help="digits, mnist, or an .npz; the first --fraction of its test split is the validation set")
@click.option("--fraction", type=click.FloatRange(0.05, 0.95), default=0.5, show_default=True,
              help="share of the test split used to fit T (evaluate on the rest)")
@click.option("--method", type=click.Choice(["temperature"]), default="temperature", show_default=True)
@click.option("--out", type=click.Path(), default=None, help="calibrated posterior folder (default <posterior>-calibrated)")
@friendly_errors
def calibrate(posterior, data, fraction, method, out):
    """Fit a temperature on held-out data and write the calibrated posterior (bundles converted from it apply T)."""
    import tflbayes as tb

    out = out or f"{str(Path(posterior)).rstrip('/')}-calibrated"
    check_output_dir(out, "--out")
    post = tb.load(posterior)
    ds = tb.data.load(data)
    n = max(1, int(round(fraction * len(ds.x_test))))
    (xv, yv), (xt, yt) = (ds.x_test[:n], ds.y_test[:n]), (ds.x_test[n:], ds.y_test[n:])
    cal = tb.calibrate(post, (xv, yv), method=method)
    out = out or f"{str(Path(posterior)).rstrip('/')}-calibrated"
    cal.save(out)
    line = f"T = {cal.options['calibration']['temperature']:.4f} ({cal.options['calibration']['applied']}) on {n} inputs"
    if len(xt):
        before, after = tb.metrics.evaluate(post, xt, yt), tb.metrics.evaluate(cal, xt, yt)
        line += (f"; on the other {len(xt)}: NLL {before['nll']:.4f} -> {after['nll']:.4f}, "
                 f"ECE {before['ece']:.4f} -> {after['ece']:.4f}")
    click.echo(f"{line}; wrote {out}")


COMMANDS = [calibrate]
