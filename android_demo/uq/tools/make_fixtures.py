"""Record real bundles' raw graph outputs and the Python runtime's results as JSON fixtures for the Java tests.

    .venv/bin/python android_demo/uq/tools/make_fixtures.py [--out android_demo/uq/src/test/resources/bundles]

Trains tiny posteriors on the bundled digits (a 3-member MLP ensemble, an MC-dropout MLP, an EnD²
student of the ensemble; one epoch each: the fixtures test the plumbing, not accuracy), converts each
with ``tb.convert`` to every kind the app runs (members, batched, stochastic, dirichlet; float32 and
int8, plus an Edge TPU batched bundle), runs ``tb.load_bundle(...)`` on four inputs (three test digits,
one uniform-noise image) and writes one ``<kind>-<precision>.json`` per bundle:

- ``manifest_json``: the bundle's manifest.json (its text, re-serialised compactly);
- ``graph_tensors``: per graph file, the LiteRT signature's inputs and outputs (name, tensor index,
  shape, dtype, int8 scale / zero point), read from the ``.tflite`` with ``ai_edge_litert``;
- ``inputs[i]``: ``x`` (float), ``x_int8`` (TFLite rounding of ``x`` with the manifest's input
  quantization, for int8 bundles), ``graphs[file]`` the values every graph received and returned
  for this input (int8 outputs as the raw integers the interpreter produced), and ``python``: the
  runtime's decision (class name or "abstain"), label, probs, total, aleatoric, epistemic.

Raw values come from :meth:`Bundle.run` (every named value of the pipeline, dequantized); int8
outputs are re-quantized with the tensor's own scale / zero point and checked to dequantize back
exactly, so they are the interpreter's integers. Deterministic bundles' ``python`` results are
:meth:`Bundle.predict` / :meth:`Bundle.decide` (checked equal to the recorded run). A stochastic
bundle draws fresh samples on every call, so its result is the recorded run's outputs with
``Bundle.decide``'s rule (abstain where the calibrated score exceeds the threshold).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "test" / "resources" / "bundles"
KINDS = [("members", "float32"), ("members", "int8"), ("batched", "float32"), ("batched", "int8"),
         ("batched", "edgetpu"), ("stochastic", "float32"), ("stochastic", "int8"), ("dirichlet", "float32"),
         ("dirichlet", "int8")]
COVERAGE = 0.5  # a low coverage so that some recorded inputs abstain


def _f32(v) -> float:
    """A float32 value in its shortest round-trip decimal (9 significant digits)."""
    return float(f"{float(np.float32(v)):.9g}")


def _f64(v) -> float:
    return float(f"{float(v):.12g}")


def _round_half_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _details(path: Path) -> dict:
    """name -> {index, shape, dtype, scale, zero_point} of the signature's inputs and outputs."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    out = {}
    for side, dets in (("inputs", runner.get_input_details()), ("outputs", runner.get_output_details())):
        out[side] = {}
        for name, d in dets.items():
            q = d.get("quantization_parameters") or {}
            scales = list(q.get("scales", []))
            entry = {"index": int(d["index"]), "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
            if entry["dtype"] == "int8" and scales:
                entry["scale"] = float(scales[0])
                entry["zero_point"] = int(q["zero_points"][0])
            out[side][name] = entry
    return out


def _encode(v: np.ndarray, det: dict) -> dict:
    """A float value as the tensor holds it: int8 -> the raw integers (exactly recovered), else float32."""
    v = np.asarray(v, dtype=np.float32)
    rec = {"shape": [int(s) for s in v.shape], "dtype": det["dtype"]}
    if det["dtype"] == "int8":
        scale, zp = np.float32(det["scale"]), det["zero_point"]
        q = np.clip(np.round(v / scale) + zp, -128, 127).astype(np.int8)
        back = ((q.astype(np.float32) - zp) * scale).astype(np.float32)
        if not np.array_equal(back, v):
            raise AssertionError(f"int8 output does not re-quantize exactly (max diff {np.abs(back - v).max()})")
        rec.update(values=q.ravel().tolist(), scale=float(scale), zero_point=int(zp))
    else:
        rec["values"] = [_f32(t) for t in v.ravel()]
    return rec


def _slice(v: np.ndarray, i: int) -> np.ndarray:
    v = np.asarray(v)
    return v[:, i : i + 1] if v.ndim == 3 else v[i : i + 1]


def _python_result(bundle, out: dict, x: np.ndarray, deterministic: bool) -> list:
    thr = bundle.thresholds
    score = thr["score"]
    probs = out["probs"].astype(np.float64)
    probs = probs / probs.sum(-1, keepdims=True)
    total, ale, epi = (out[k].astype(np.float64) for k in ("total", "aleatoric", "epistemic"))
    labels = probs.argmax(-1)
    u = {"total": total, "epistemic": epi}[score]
    decisions = ["abstain" if ui > thr[score] else bundle.class_names[k] for ui, k in zip(u, labels)]
    if deterministic:  # the runtime's own calls must agree with the recorded run
        pred = bundle.predict(x)
        np.testing.assert_allclose(pred.probs, probs, atol=1e-7)
        np.testing.assert_allclose(pred.total, total, atol=1e-7)
        assert bundle.decide(x) == decisions
    return [{"decision": d, "label": int(k), "probs": [_f64(p) for p in probs[i]], "total": _f64(total[i]),
             "aleatoric": _f64(ale[i]), "epistemic": _f64(epi[i])} for i, (d, k) in enumerate(zip(decisions, labels))]


def record(bundle, x: np.ndarray) -> dict:
    """The fixture of one bundle on inputs ``x``."""
    m = bundle.manifest
    files = bundle.files
    details = {f: _details(bundle.path / f) for f in files}
    out = bundle.run(x)
    q_in = (m["input"].get("quantization") or None) if m["input"]["dtype"] == "int8" else None
    inputs = []
    for i in range(len(x)):
        xi = x[i : i + 1].astype(np.float32)
        rec = {"x": [_f32(t) for t in xi.ravel()], "graphs": {}}
        if q_in is not None:
            v = xi / np.float32(q_in["scale"])
            frac = np.abs(v - np.floor(v))
            assert not np.any(np.isclose(frac, 0.5, atol=1e-6)), "an input sits on a rounding tie"
            rec["x_int8"] = np.clip(_round_half_away(v) + q_in["zero_point"], -128, 127).astype(int).ravel().tolist()
        for st in m["stages"]:
            if st["kind"] == "members":
                for s, f in enumerate(st["files"]):
                    det = details[f]["outputs"]["logits"]
                    rec["graphs"][f] = {"outputs": {"logits": _encode(out["logits"][s, i : i + 1], det)}}
            elif st["kind"] == "graph":
                f, g = st["file"], {"inputs": {}, "outputs": {}}
                for name in st["inputs"]:
                    if name != "x":
                        g["inputs"][name] = _encode(_slice(out[name], i), {"dtype": "float32"})
                for name in st["outputs"]:
                    g["outputs"][name] = _encode(_slice(out[name], i), details[f]["outputs"][name])
                rec["graphs"][f] = g
        inputs.append(rec)
    for rec, py in zip(inputs, _python_result(bundle, out, x, deterministic=m["mode"] != "stochastic")):
        rec["python"] = py
    return {"generated_by": "android_demo/uq/tools/make_fixtures.py", "bundle": f"{m['mode']}-{m['precision']}",
            "manifest_json": json.dumps(m), "graph_tensors": details, "inputs": inputs}


def _posteriors(ds):
    import tflbayes as tb
    from tflbayes.architectures import builder

    build = builder("mlp", ds.input_shape, ds.num_classes)
    ens = tb.fit(build, ds, method="deep_ensemble", members=3, epochs=1, verbose=0, seed=0)
    mcd = tb.fit(build, ds, method="mc_dropout", epochs=1, verbose=0, seed=0, num_samples=4)
    student = tb.distill(ens, ds.x_train[:300], method="end2", epochs=1, augment=0, x_aux=None, seed=0)
    return {"members": ens, "batched": ens, "stochastic": mcd, "dirichlet": student}


def main(argv=None) -> int:
    import tflbayes as tb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    ds = tb.data.load("digits")
    posts = _posteriors(ds)
    noise = tb.data.ood(ds, "noise", seed=1)
    x = np.concatenate([ds.x_test[:3], noise[:1]]).astype(np.float32)
    cal = (ds.x_test[:200], ds.y_test[:200])
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for mode, precision in KINDS:
            path = Path(tmp) / f"{mode}-{precision}"
            bundle = tb.convert(posts[mode], path, mode=mode, precision=precision,
                                representative_data=ds.x_train[:200], calibration=cal, coverage=COVERAGE)
            fixture = record(bundle, x)
            dest = args.out / f"{mode}-{precision}.json"
            tmp_dest = dest.with_suffix(".json.tmp")
            tmp_dest.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
            tmp_dest.replace(dest)
            decisions = [r["python"]["decision"] for r in fixture["inputs"]]
            print(f"{dest.name}: {dest.stat().st_size} bytes, decisions {decisions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
