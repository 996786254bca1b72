"""Edge TPU: the compiler-16 op/version check, co-compilation command and cache estimate, device selection,
and the Coral streaming demo on the CPU fallback path (no Edge TPU or compiler on these machines)."""
from __future__ import annotations

import ctypes.util
import importlib.util
import json
import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.runtime.manifest import seal
from tflbayes._io import sha256_file
from tflbayes.converters.edgetpu import (COMPILER16_MAX_VERSIONS, EDGETPU_OPS, PARAMETER_CACHE_BYTES,
                                         check_edgetpu, op_versions)
from tflbayes.errors import BundleError, ConversionError, InvalidInputError

ROOT = Path(__file__).resolve().parents[1]


def _load_stream():
    spec = importlib.util.spec_from_file_location("coral_stream", ROOT / "android_demo" / "coral" / "stream.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def members_tpu(tmp_path_factory, untrained_ensemble, digits):
    """An ``edgetpu`` members bundle of the 3-member untrained MLP ensemble, calibrated on 100 digits."""
    out = tmp_path_factory.mktemp("edgetpu") / "members"
    tb.convert(untrained_ensemble, out, mode="members", precision="edgetpu", representative_data=digits.x_train[:100],
               calibration=(digits.x_test[:100], digits.y_test[:100]), verify=False)  # verification: test_convert
    return out


def test_the_table_reproduces_the_reported_compiler16_rejections():
    # "Didn't find op for builtin opcode ..." reports for compiler 16.0.384591198 (google-coral/edgetpu 631, 845,
    # 879; libedgetpu 71) against versions that compile
    for op, rejected in (("CONV_2D", 6), ("EXP", 2), ("TRANSPOSE_CONV", 4), ("QUANTIZE", 3)):
        assert rejected > COMPILER16_MAX_VERSIONS[op], op
    for op, ok in (("CONV_2D", 5), ("EXP", 1), ("TRANSPOSE_CONV", 3), ("RESIZE_BILINEAR", 3), ("RSQRT", 2)):
        assert ok <= COMPILER16_MAX_VERSIONS[op], op
    assert "RANDOM_UNIFORM" not in COMPILER16_MAX_VERSIONS and "GELU" not in COMPILER16_MAX_VERSIONS  # TF >= 2.8
    assert EDGETPU_OPS <= set(COMPILER16_MAX_VERSIONS)


def test_members_bundle_passes_the_compiler16_check(members_tpu):
    m = tb.load_bundle(members_tpu).manifest
    readiness = m["edgetpu"]["readiness"]
    assert sorted(readiness) == ["member_000.tflite", "member_001.tflite", "member_002.tflite"]
    for f, r in readiness.items():
        assert r["ready"] and r["compiler16_accepts"] and not r["rejected"], (f, r)
        assert r["grouped_conv2d"] == 0 and r["batch_matmul"] == 0
        assert r["cpu_ops"] == 0 and r["mapped_ops"] > 0
        for v in op_versions((members_tpu / f).read_bytes()):  # re-read from the file itself
            assert v["version"] <= COMPILER16_MAX_VERSIONS[v["op"]], v


def test_members_are_co_compiled_by_one_command_on_the_bundle_files(members_tpu):
    e = tb.load_bundle(members_tpu).manifest["edgetpu"]
    argv = shlex.split(e["command"])
    assert argv[:4] == ["edgetpu_compiler", "-s", "-o", str(members_tpu.resolve())]
    assert argv[4:] == [str(members_tpu.resolve() / f"member_{i:03d}.tflite") for i in range(3)]
    assert all(Path(p).is_file() for p in argv[4:])  # runnable as printed: the files exist there
    assert e["compile"]["command"] == e["command"] and ".tmp" not in e["command"]


def test_parameter_cache_estimate_counts_the_int8_weights(members_tpu, untrained_ensemble):
    pc = tb.load_bundle(members_tpu).manifest["edgetpu"]["parameter_cache"]
    # int8 kernels (1 byte per weight) + int32 biases (4 bytes) per member, plus a few shape constants
    expected = sum(w.size * (1 if w.ndim > 1 else 4) for w in untrained_ensemble.model.get_weights())
    for f, b in pc["parameter_bytes"].items():
        assert expected <= b <= expected + 64, (f, b, expected)
    assert pc["total_parameter_bytes"] == sum(pc["parameter_bytes"].values())
    assert pc["fits"] and pc["files_cached"] == 3 and pc["cache_bytes"] == PARAMETER_CACHE_BYTES


def test_batched_edgetpu_body_has_no_grouped_conv_or_batch_matmul(tmp_path, untrained_ensemble, digits):
    b = tb.convert(untrained_ensemble, tmp_path / "b", mode="batched", precision="edgetpu",
                   representative_data=digits.x_train[:100], verify=False)
    body = next(f for f in b.files if f != "head.tflite")
    r = check_edgetpu((b.path / body).read_bytes())
    assert r["compiler16_accepts"] and r["grouped_conv2d"] == 0 and r["batch_matmul"] == 0, r
    assert "BATCH_MATMUL" not in r["ops"]
    assert b.manifest["edgetpu"]["readiness"][body]["compiler16_accepts"]


def test_the_packed_int8_layout_is_what_compiler16_refuses(tmp_path, untrained_ensemble, digits):
    b = tb.convert(untrained_ensemble, tmp_path / "b", mode="batched", precision="int8",
                   representative_data=digits.x_train[:100], verify=False)
    r = check_edgetpu((b.path / "body.tflite").read_bytes())
    if r["grouped_conv2d"] == 0 and r["batch_matmul"] == 0:
        pytest.fail(f"the int8 batched body is no longer packed; ops {r['op_versions']}")
    assert not r["compiler16_accepts"]
    assert any("grouped CONV_2D" in p or "BATCH_MATMUL" in p for p in r["rejected"])


def test_an_op_version_compiler16_does_not_know_is_refused_before_writing(tmp_path, digits):
    from tflbayes._keras import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(8, activation="exponential"), keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    post = tb.EnsemblePosterior(model, [[rng.normal(0, 0.1, w.shape).astype(np.float32) for w in model.get_weights()]
                                        for _ in range(2)], method="deep_ensemble", options={},
                                class_names=[str(i) for i in range(10)])
    out = tmp_path / "exp"
    with pytest.raises(ConversionError, match=r"EXP version 2.*compiler 16"):
        tb.convert(post, out, mode="members", precision="edgetpu", representative_data=digits.x_train[:50])
    assert not out.exists()


def test_edgetpu_device_selection_is_validated(members_tpu):
    with pytest.raises(InvalidInputError, match="edgetpu_device"):
        tb.load_bundle(members_tpu, use_edgetpu=True, edgetpu_device="usb0")
    with pytest.raises(InvalidInputError, match="use_edgetpu"):
        tb.load_bundle(members_tpu, edgetpu_device=":0")
    with pytest.raises(BundleError, match="compile the bundle first: edgetpu_compiler"):
        tb.load_bundle(members_tpu, use_edgetpu=True, edgetpu_device="pci:0")


def test_a_missing_edgetpu_runtime_is_a_bundle_error(members_tpu, tmp_path):
    if ctypes.util.find_library("edgetpu"):
        pytest.skip("libedgetpu is installed here: the missing-library path cannot be exercised")
    b = Path(shutil.copytree(members_tpu, tmp_path / "b"))
    m = json.loads((b / "manifest.json").read_text())
    st = m["stages"][0]
    st["edgetpu_files"] = [f.replace(".tflite", "_edgetpu.tflite") for f in st["files"]]
    for f, c in zip(st["files"], st["edgetpu_files"]):  # stand-ins for compiled files
        shutil.copy(b / f, b / c)
    st["edgetpu_sha256"] = [sha256_file(b / c) for c in st["edgetpu_files"]]
    (b / "manifest.json").write_text(json.dumps(seal(m)))
    with pytest.raises(BundleError, match=r"libedgetpu\.so\.1 on device 'usb'.*use_edgetpu=False"):
        tb.load_bundle(b, use_edgetpu=True, edgetpu_device="usb")


def test_cli_predict_edgetpu_flags(members_tpu, tmp_path, digits):
    from click.testing import CliRunner

    from tflbayes.cli.main import cli

    np.save(tmp_path / "x.npy", digits.x_test[:2])
    runner = CliRunner()
    r = runner.invoke(cli, ["predict", str(members_tpu), "--input", str(tmp_path / "x.npy"), "--device", "usb"])
    assert r.exit_code == 2 and "--edgetpu" in r.output
    r = runner.invoke(cli, ["predict", str(members_tpu), "--input", str(tmp_path / "x.npy"), "--edgetpu"])
    assert r.exit_code != 0 and "edgetpu_compiler" in r.output
    r = runner.invoke(cli, ["predict", str(members_tpu), "--input", str(tmp_path / "x.npy"), "--json"])
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 2


def test_coral_stream_on_the_cpu_fallback(members_tpu, tmp_path, digits, capsys):
    from PIL import Image

    stream = _load_stream()
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        np.save(frames / f"d{i}.npy", digits.x_test[i])
    big = np.kron(digits.x_test[3][..., 0], np.ones((4, 4)))  # a 32x32 greyscale PNG of a digit
    Image.fromarray((big * 255).astype(np.uint8)).convert("RGB").save(frames / "e_png.png")
    assert stream.main([str(members_tpu), "--images", str(frames), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["frame"] for r in rows] == ["d0.npy", "d1.npy", "d2.npy", "e_png.png"]
    bundle = tb.load_bundle(members_tpu)
    x = np.stack([digits.x_test[i] for i in range(3)] + [stream.to_input(np.asarray(Image.open(frames / "e_png.png")),
                                                                           (8, 8, 1))])
    pred = bundle.predict(x)
    assert [r["decision"] for r in rows] == bundle.decide(x)
    for i, r in enumerate(rows):
        assert r["class"] == bundle.class_names[pred.label[i]]
        assert r["total"] == pytest.approx(pred.total[i], abs=1e-6)
        assert r["epistemic"] == pytest.approx(pred.epistemic[i], abs=1e-6)
        assert r["ms"] > 0
    # the PNG was resized 32x32 -> 8x8 and scaled back to [0, 1]: close to the original digit
    assert np.abs(x[3] - digits.x_test[3]).mean() < 0.15
    assert stream.main([str(members_tpu), "--images", str(tmp_path / "nowhere")]) == 2


@pytest.fixture(scope="module")
def tiny_stochastic_and_student(digits, untrained_ensemble):
    from tflbayes.architectures import builder

    build = builder("mlp", digits.input_shape, digits.num_classes)
    mcd = tb.fit(build, (digits.x_train[:300], digits.y_train[:300]), method="mc_dropout", epochs=1, verbose=0,
                 seed=0, num_samples=4)
    student = tb.distill(untrained_ensemble, digits.x_train[:200], method="end2", epochs=1, augment=0, x_aux=None, seed=0)
    return {"stochastic": mcd, "dirichlet": student}


@pytest.mark.parametrize("mode", ["stochastic", "dirichlet"])
def test_every_edgetpu_kind_passes_the_compiler16_check(tmp_path, digits, tiny_stochastic_and_student, mode):
    b = tb.convert(tiny_stochastic_and_student[mode], tmp_path / mode, mode=mode, precision="edgetpu",
                   representative_data=digits.x_train[:100], verify=False)
    readiness = b.manifest["edgetpu"]["readiness"]
    assert list(readiness) == ["body.tflite"]  # the float head (random ops / digamma) is not compiled
    r = readiness["body.tflite"]
    assert r["compiler16_accepts"] and r["ready"] and r["cpu_ops"] == 0, r
    head_ops = {v["op"] for v in op_versions((b.path / "head.tflite").read_bytes())}
    body_ops = {v["op"] for v in op_versions((b.path / "body.tflite").read_bytes())}
    assert not any(o.startswith("RANDOM") for o in body_ops)
    if mode == "stochastic":  # sampling (ops compiler 16 cannot even parse) stays in the CPU head
        assert {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"} & head_ops
        assert not {"RANDOM_UNIFORM", "RANDOM_STANDARD_NORMAL"} & set(COMPILER16_MAX_VERSIONS)
    else:  # the digamma head (LOG, DIV, ...) runs on the CPU
        assert "LOG" in head_ops and "LOG" not in EDGETPU_OPS


FAKE_COMPILER = """#!/bin/sh
# stands in for edgetpu_compiler 16: copies each input to <stem>_edgetpu.tflite and prints its summary format
out=.
while [ "$#" -gt 0 ]; do
  case "$1" in -s) shift ;; -o) out="$2"; shift 2 ;; *) break ;; esac
done
echo "Edge TPU Compiler version 16.0.384591198"
for f in "$@"; do
  stem=$(basename "$f" .tflite)
  cp "$f" "$out/${stem}_edgetpu.tflite"
  printf 'Input model: %s\\nOn-chip memory used for caching model parameters: 17.50KiB\\n' "$f"
  printf 'On-chip memory remaining for caching model parameters: 6.50MiB\\n'
  printf 'Off-chip memory used for streaming uncached model parameters: 0.00B\\nNumber of Edge TPU subgraphs: 1\\n'
  printf 'Total number of operations: 5\\nNumber of operations that will run on Edge TPU: 5\\n'
  printf 'Number of operations that will run on CPU: 0\\n'
done
"""


def test_a_compiler_on_path_co_compiles_in_place_and_its_files_are_checksummed(tmp_path, monkeypatch,
                                                                                untrained_ensemble, digits):
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh to run the stand-in compiler")
    fake = tmp_path / "bin" / "edgetpu_compiler"
    fake.parent.mkdir()
    fake.write_text(FAKE_COMPILER)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "tpu"
    b = tb.convert(untrained_ensemble, out, mode="members", precision="edgetpu",
                   representative_data=digits.x_train[:100], verify=False)
    e = b.manifest["edgetpu"]
    assert e["compile"]["compiled"], e["compile"]
    assert e["compile"]["files"] == [f"member_{i:03d}_edgetpu.tflite" for i in range(3)]
    report = e["compile"]["report"]
    assert [r["input_model"] for r in report] == [f"member_{i:03d}.tflite" for i in range(3)]  # relative: ran in place
    assert report[0]["on_chip_parameter_bytes"] == int(17.5 * 1024) and report[0]["ops_on_cpu"] == 0
    st = b.manifest["stages"][0]
    assert st["edgetpu_files"] == e["compile"]["files"]
    assert st["edgetpu_sha256"] == [sha256_file(out / f) for f in st["edgetpu_files"]]
    assert b.predict(digits.x_test[:2]).probs.shape == (2, 10)  # the CPU path is unchanged
    if not ctypes.util.find_library("edgetpu"):
        with pytest.raises(BundleError, match=r"libedgetpu\.so\.1"):  # the compiled members go to the delegate
            tb.load_bundle(out, use_edgetpu=True)
