"""``tflbayes convert | predict | inspect``: LiteRT bundles."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from tflbayes.cli._common import check_output_dir, friendly_errors, print_table
from tflbayes.errors import BundleError, InvalidInputError

__all__ = ["COMMANDS", "convert", "predict", "inspect"]


def _load_xy(path, what):
    from tflbayes._io import load_npz

    arrays = load_npz(path, InvalidInputError)
    if "x" not in arrays:
        raise InvalidInputError(f"{path}: {what} file needs an array 'x' (and 'y' for labels); found {sorted(arrays)}.")
    return arrays["x"], arrays.get("y")


@click.command()
@click.argument("posterior", type=click.Path())
@click.option("--mode", type=click.Choice(["members", "batched", "stochastic", "dirichlet"]), default=None,
              help="default: batched for ensembles, stochastic for MC dropout / VI")
@click.option("--precision", type=click.Choice(["float32", "float16", "dynamic", "int8", "edgetpu"]),
              default="float32", show_default=True)
@click.option("--data", default=None, help="digits, mnist or an .npz: representative inputs (train split) "
              "and calibration data (test split)")
@click.option("--calibration", type=click.Path(), default=None, help=".npz with x, y for the abstention thresholds")
@click.option("--num-samples", type=int, default=None, help="S per invoke (stochastic) / first S members")
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option("--coverage", type=float, default=0.95, show_default=True, help="in-distribution inputs the threshold keeps")
@click.option("--allow-flex", is_flag=True, help="allow Select TF (Flex) ops")
@click.option("--sparse-layout", type=click.Choice(["auto", "dense", "shared_mask", "tflite"]), default="auto",
              show_default=True, help="pruned kernels: dense constants, shared mask densified in the batched "
              "graph, or LiteRT's sparse format per member file")
@click.option("--layout", type=click.Choice(["auto", "packed", "general"]), default="auto", show_default=True,
              help="batched/stochastic graphs: packed (grouped convs, BATCH_MATMUL) for chains, general (the "
              "members' own networks / the model's own layers) for any model; auto picks")
@click.option("--target", type=click.Choice(["litert", "micro"]), default="litert", show_default=True,
              help="micro: a microcontroller bundle (int8/float32, TFLite Micro ops only, verified in TFLite Micro) "
              "with a micro/ folder of C sources")
@click.option("--out", type=click.Path(), default=None, help="bundle folder (default bundles/<posterior>-<mode>-<precision>)")
@friendly_errors
def convert(posterior, mode, precision, data, calibration, num_samples, batch_size, coverage, allow_flex,
            sparse_layout, out, target="litert", layout="auto"):
    """Convert a posterior folder to a verified LiteRT bundle."""
    import tflbayes as tb

    out = out or f"bundles/{Path(posterior).name}-{mode or 'auto'}-{precision}"
    check_output_dir(out, "--out")  # before converting
    post = tb.load(posterior)
    rep = cal = None
    if data is not None:
        hold = (post.options.get("data") or {}).get("holdout_classes") or None
        ds = tb.data.load(data, holdout_classes=hold)
        rep, cal = ds.x_train[:300], (ds.x_test, ds.y_test)
    if calibration is not None:
        x, y = _load_xy(calibration, "calibration")
        if y is None:
            raise InvalidInputError(f"{calibration}: the calibration file needs labels 'y'.")
        cal = (x, y)
    if precision in ("int8", "edgetpu") and rep is None:
        raise click.UsageError(f"--precision {precision} needs representative inputs: pass --data digits|mnist|file.npz.")
    bundle = tb.convert(post, out, mode=mode, precision=precision, representative_data=rep, num_samples=num_samples,
                        calibration=cal, batch_size=batch_size, coverage=coverage, allow_flex=allow_flex,
                        sparse_layout=sparse_layout, target=target, layout=layout)
    v = bundle.manifest["verification"]
    facts = ", ".join(f"{k}={v[k]:.3g}" for k in ("max_abs_prob_diff", "argmax_agreement", "max_excess") if k in v)
    click.echo(f"wrote {bundle.mode}/{bundle.precision} bundle (S={bundle.num_samples}, {bundle.size_bytes} bytes) "
               f"to {out}; verification passed ({facts})")
    if "micro" in bundle.manifest:
        mc = bundle.manifest["micro"]
        click.echo(f"TFLite Micro: {mc['flash_bytes']} bytes of flatbuffers, arena {mc['arena_bytes_max']} bytes; "
                   f"C sources in {Path(out) / 'micro'}")
    if "edgetpu" in bundle.manifest:
        e = bundle.manifest["edgetpu"]
        ready = all(r["ready"] for r in e["readiness"].values())
        click.echo(f"Edge TPU: {'ready' if ready else 'NOT ready: ' + '; '.join(p for r in e['readiness'].values() for p in r['problems'][:2])}"
                   f"\ncompile with: {e['command']}")
        pc = e.get("parameter_cache")
        if pc:
            click.echo(f"Edge TPU parameter cache: {pc['total_parameter_bytes'] / 2**20:.2f} MiB of int8 parameters, "
                       f"~{pc['cache_bytes'] / 2**20:.2f} MiB on chip: "
                       + ("all fit" if pc["fits"] else f"{pc['files_cached']} of {len(pc['parameter_bytes'])} file(s) cached"))


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--input", "input_path", required=True, type=click.Path(), help=".npy (one input or a batch) or .npz with 'x'")
@click.option("--threshold", type=float, default=None, help="override the calibrated threshold")
@click.option("--score", type=click.Choice(["epistemic", "total"]), default=None)
@click.option("--json", "as_json", is_flag=True, help="print JSON lines instead of a table")
@click.option("--threads", type=int, default=None, help="LiteRT CPU threads")
@click.option("--edgetpu", is_flag=True, help="run the compiled *_edgetpu.tflite graphs on a Coral Edge TPU "
              "(libedgetpu.so.1)")
@click.option("--device", "edgetpu_device", default=None,
              help="which Edge TPU (with --edgetpu): ':0', ':1', 'usb', 'pci', 'usb:0', ... (default: the first)")
@click.option("--runtime", type=click.Choice(["litert", "litert-reference", "tflm"]), default="litert",
              show_default=True, help="litert-reference: LiteRT's reference kernels; tflm: TFLite Micro's "
              "interpreter (what a microcontroller computes)")
@friendly_errors
def predict(bundle, input_path, threshold, score, as_json, threads, edgetpu, edgetpu_device, runtime="litert"):
    """Run a bundle on inputs: class or abstain, with total / aleatoric / epistemic uncertainty."""
    from tflbayes.runtime import load_bundle

    if edgetpu_device is not None and not edgetpu:
        raise click.UsageError("--device selects an Edge TPU; pass it together with --edgetpu.")
    if threads is not None and threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, received {threads}.")
    if threshold is not None and np.isnan(threshold):
        raise InvalidInputError(f"--threshold must be a number (inf: never abstain), received {threshold}.")
    b = load_bundle(bundle, num_threads=threads, use_edgetpu=edgetpu, edgetpu_device=edgetpu_device,
                    runtime=runtime)
    p = Path(input_path)
    if p.suffix == ".npz":
        x, _ = _load_xy(p, "input")
    else:
        if not p.is_file():
            raise InvalidInputError(f"Input file {p} does not exist.")
        try:
            x = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise InvalidInputError(f"{p} cannot be read as a numeric .npy without unpickling ({e}).") from None
        except Exception as e:
            raise InvalidInputError(f"{p} cannot be read as .npy ({type(e).__name__}: {e}).") from None
    x = np.asarray(x)
    if x.ndim == len(b.input_shape):
        x = x[None]
    pred = b.predict(x)
    thr_ok = threshold is not None or (b.thresholds or {}).get(score or (b.thresholds or {}).get("score", "epistemic")) is not None
    decisions = b.decide(x, threshold=threshold, score=score) if thr_ok else [b.class_names[k] for k in pred.label]
    rows = []
    for i, d in enumerate(decisions):
        rows.append({"input": i, "decision": d, "class": b.class_names[int(pred.label[i])],
                     "p": float(pred.probs[i].max()), "total": float(pred.total[i]),
                     "aleatoric": None if pred.aleatoric is None else float(pred.aleatoric[i]),
                     "epistemic": None if pred.epistemic is None else float(pred.epistemic[i])})
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
    else:
        print_table(rows, ["input", "decision", "class", "p", "total", "aleatoric", "epistemic"])
        if not thr_ok:
            click.echo("(no calibrated threshold in this bundle: decisions never abstain; pass --threshold)")


@click.command()
@click.argument("bundle", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="print the whole manifest as JSON")
@friendly_errors
def inspect(bundle, as_json):
    """Show a bundle: manifest, op list per file, sizes, thresholds, verification, Edge TPU readiness."""
    import gzip

    from tflbayes.runtime import load_bundle

    b = load_bundle(bundle)
    m = b.manifest
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    click.echo(f"{bundle}: mode={b.mode} precision={b.precision} S={b.num_samples} classes={len(b.class_names)} "
               f"input={m['input']['shape']} {m['input']['dtype']} postprocessing={m['postprocessing']}")
    rows = []
    for f in b.files:
        raw = (b.path / f).read_bytes()
        ops = (m.get("ops") or {}).get(f) or ["(not recorded)"]
        rows.append({"file": f, "bytes": len(raw), "gzip": len(gzip.compress(raw)), "ops": " ".join(ops)})
    print_table(rows, ["file", "bytes", "gzip", "ops"])
    v = m.get("verification") or {}  # validate_manifest checked it is an object
    click.echo("verification: " + ("passed" if v.get("passed") else "not run" if v.get("skipped") else "FAILED")
               + "".join(f", {k}={_num(v[k])}" for k in ("max_abs_prob_diff", "argmax_agreement", "max_excess",
                                                          "head_max_diff") if k in v))
    t = m.get("thresholds")  # validated: score, a finite value for it, coverage in (0, 1] or absent
    cov = f" keeps {t['coverage']:.0%} of in-distribution inputs" if t and t.get("coverage") is not None else ""
    click.echo("thresholds: " + ("none (convert with calibration data)" if not t else
                                 f"{t['score']} <= {t[t['score']]:.4g}{cov}"))
    e = m.get("edgetpu")
    if e is not None:
        readiness = e.get("readiness") if isinstance(e, dict) else None
        if not isinstance(readiness, dict) or not all(isinstance(r, dict) for r in readiness.values()):
            raise BundleError(f"{b.path / 'manifest.json'}: field `edgetpu.readiness` must map files to reports.")
        for f, r in readiness.items():
            problems = r.get("problems") if isinstance(r.get("problems"), list) else []
            click.echo(f"Edge TPU {f}: {'ready' if r.get('ready') is True else 'NOT ready'}"
                       + "".join(f"\n  - {p}" for p in problems))
        click.echo(f"compile with: {e.get('command', '(not recorded)')}")


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)[:40]


COMMANDS = [convert, predict, inspect]
