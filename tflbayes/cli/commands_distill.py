"""``tflbayes distill``: one network from a posterior folder (BDK, GPED, EnD²), or a student search."""
from __future__ import annotations

from pathlib import Path

import click

from tflbayes.cli._common import check_output_dir, check_output_folder, friendly_errors, parse_options, print_table
from tflbayes.cli.commands_core import EPOCHS

__all__ = ["COMMANDS", "distill"]


@click.command()
@click.argument("posterior", type=click.Path())
@click.option("--method", type=click.Choice(["bdk", "gped", "end2"]), default="end2", show_default=True)
@click.option("--data", default="digits", show_default=True,
              help="digits, mnist or an .npz: its training inputs are the transfer set (labels unused)")
@click.option("--epochs", type=EPOCHS, default="auto", show_default=True,
              help="'auto': a budget in optimizer steps with early stopping on held-out transfer inputs")
@click.option("--aux", type=click.Choice(["auto", "none"]), default="auto", show_default=True,
              help="auxiliary off-distribution inputs made from the transfer set")
@click.option("--loss", type=click.Choice(["proxy", "nll"]), default=None, help="end2: proxy-Dirichlet KL or Dirichlet NLL")
@click.option("--option", "-o", "extra", multiple=True, help="any other distill option as key=value (repeatable)")
@click.option("--search", is_flag=True, help="prune a large student to each budget and compare with width multipliers")
@click.option("--budgets", default="0.5,0.25,0.1", show_default=True, help="--search: fractions of weights to keep")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(), default=None, help="student folder (default runs/<posterior>-<method>)")
@click.option("--quiet", is_flag=True, help="no progress bars")
@friendly_errors
def distill(posterior, method, data, epochs, aux, loss, extra, search, budgets, seed, out, quiet):
    """Distill a posterior folder into one student network and save it as a posterior folder."""
    import tflbayes as tb
    from tflbayes.distill import distill as run_distill

    teacher = tb.load(posterior)
    hold = (teacher.options.get("data") or {}).get("holdout_classes") or None
    ds = tb.data.load(data, holdout_classes=hold)
    options = parse_options(extra)
    if loss is not None:
        options["loss"] = loss
    out = Path(out or f"runs/{Path(posterior).name}-{method}{'-search' if search else ''}")
    (check_output_folder if search else check_output_dir)(out, "--out")  # before training the student
    kwargs = dict(method=method, epochs=epochs, x_aux=None if aux == "none" else "auto", seed=seed,
                  verbose=0 if quiet else 1, **options)
    if not search:
        student = run_distill(teacher, ds.x_train, **kwargs)
        student.options.setdefault("data", {"name": ds.name, "holdout_classes": list(ds.holdout_classes)})
        student.save(out)
        acc = float((student.predict(ds.x_test).label == ds.y_test).mean())
        click.echo(f"distilled {Path(posterior).name} with {method} ({type(student).__name__}), test accuracy "
                   f"{acc:.4f}; wrote {out}")
        return
    fractions = [float(b) for b in budgets.split(",") if b.strip()]
    result = run_distill(teacher, ds.x_train, search="prune", budgets=fractions,
                         validation_data=(ds.x_test, ds.y_test), x_ood=tb.data.ood(ds, "noise"),
                         plot=out / "frontier.png", **kwargs)
    for name, student in result.students.items():
        student.save(out / name.replace("@", "-"))
    from tflbayes._io import write_json

    write_json(out / "search.json", result.to_dict())
    print_table([{"name": p.name, "params": p.params, "gzip_kib": p.gzip_bytes / 1024, "latency_us": p.latency_us,
                  **p.quality} for p in result.points],
                [("name", "student"), ("params", "weights"), ("gzip_kib", "gzip KiB"), ("latency_us", "µs"),
                 ("nll", "NLL"), ("accuracy", "acc"), ("ood_auroc", "OOD-AUROC")])
    click.echo(f"searched {len(result.points)} students; wrote {out} (students, search.json, frontier.png)")


COMMANDS = [distill]
