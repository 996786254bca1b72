"""target="micro": TFLite Micro op check, verification in TFLite Micro, arena, micro/ folder, runtime="tflm", CLI."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.converters.micro import toolchain
from tflbayes.converters.micro.emit import resolver_method
from tflbayes.converters.micro.target import TFLM_OPS, check_micro_ops
from tflbayes.errors import BundleError, ConversionError, InvalidInputError

pytest.importorskip("tflite_micro", reason="tflite-micro is not installed (pip install tflite-micro)")
GCC = toolchain.tool_missing("gcc")
ARM = toolchain.tool_missing("arm-none-eabi-gcc")
GXX = toolchain.tool_missing("g++")


@pytest.fixture(scope="module")
def micro_members(tmp_path_factory, ensemble):
    """The CLI's `convert --target micro --precision int8 --data digits` of the trained 3-member ensemble."""
    from click.testing import CliRunner

    from tflbayes.cli.main import cli

    root = tmp_path_factory.mktemp("micro")
    ensemble.save(root / "ens")
    r = CliRunner().invoke(cli, ["convert", str(root / "ens"), "--mode", "members", "--precision", "int8",
                                 "--data", "digits", "--target", "micro", "--out", str(root / "bundle")])
    assert r.exit_code == 0, r.output + repr(r.exception)
    assert "TFLite Micro:" in r.output and "micro" in r.output
    return tb.load_bundle(root / "bundle", runtime="tflm")


@pytest.fixture(scope="module")
def micro_batched(tmp_path_factory, ensemble, digits):
    out = tmp_path_factory.mktemp("micro_b") / "bundle"
    return tb.convert(ensemble, out, mode="batched", precision="float32", target="micro",
                      calibration=(digits.x_test[:100], digits.y_test[:100]))


def test_micro_bundle_is_verified_in_tflite_micro(micro_members):
    m = micro_members.manifest
    assert m["target"] == "micro" and m["verification"]["runtime"] == "tflm" and m["verification"]["passed"]
    kernels = m["verification"]["kernels"]
    assert {"xnnpack", "reference", "tflm"} <= set(kernels) and all(kernels[k]["passed"] for k in ("xnnpack", "reference", "tflm"))
    assert kernels["spread"]["max_uncertainty_diff"] < 0.05  # an LSB or so between kernel families
    assert m["thresholds"]["num_inputs"] == 360 and m["thresholds"]["epistemic"] > 0
    for f, g in m["micro"]["graphs"].items():
        assert g["flatbuffer_bytes"] == (micro_members.path / f).stat().st_size
        assert 512 < g["arena_bytes"] < 64 << 10 and g["arena_bytes"] % 16 == 0
        assert set(g["ops"]) <= TFLM_OPS and not any(o.startswith("RANDOM") for o in g["ops"])


def test_tflm_runtime_matches_the_reference_kernels_and_keras(micro_members, ensemble, digits):
    x = digits.x_test[:40]
    p_tflm = micro_members.predict(x)
    p_ref = tb.load_bundle(micro_members.path, runtime="litert-reference").predict(x)
    # TFLite Micro and LiteRT's reference kernels share the int8 arithmetic
    assert np.mean(p_tflm.label == p_ref.label) == 1.0
    assert np.max(np.abs(p_tflm.epistemic - p_ref.epistemic)) < 0.02
    keras = ensemble.predict(x)
    assert np.mean(p_tflm.label == keras.label) >= 0.95
    assert micro_members.decide(x).count("abstain") <= 12


def test_arena_is_the_smallest_that_allocates_and_errors_carry_tflite_micro_messages(micro_members):
    from tflbayes.runtime.tflm import TflmGraph
    from tflbayes.uncertainty.prng import Xoshiro128

    f = micro_members.manifest["stages"][0]["files"][0]
    arena = micro_members.manifest["micro"]["graphs"][f]["arena_bytes"]
    x = np.zeros(micro_members.manifest["input"]["shape"], np.float32)
    g = TflmGraph(micro_members.path / f, micro_members.manifest, Xoshiro128(0), arena_size=arena)
    assert g(x=x)["logits"].shape == (1, 10)
    with pytest.raises(BundleError, match="(?i)allocate|failed to prepare") as e:  # C stderr, not only "failed to allocate tensors"
        TflmGraph(micro_members.path / f, micro_members.manifest, Xoshiro128(0), arena_size=arena - 64)(x=x)
    assert str(arena - 64) in str(e.value)


def test_float32_batched_micro_bundle_runs_in_tflite_micro(micro_batched, ensemble, digits):
    m = micro_batched.manifest
    assert m["target"] == "micro" and m["micro"]["graphs"]["model.tflite"]["arena_bytes"] > 0
    assert m["verification"]["max_abs_prob_diff"] < 1e-4  # the float32 tolerance, in TFLite Micro
    pred = tb.load_bundle(micro_batched.path, runtime="tflm").predict(digits.x_test[:10])
    np.testing.assert_allclose(pred.probs, ensemble.predict(digits.x_test[:10]).probs, atol=1e-4)


@pytest.fixture(scope="module")
def micro_mcd(tmp_path_factory, mc_dropout, digits):
    """MC dropout on TFLite Micro: the dropout masks are graph inputs filled by the device PRNG."""
    out = tmp_path_factory.mktemp("micro_mcd") / "bundle"
    return tb.convert(mc_dropout, out, precision="float32", target="micro", num_samples=8,
                      calibration=(digits.x_test[:100], digits.y_test[:100]))


def test_mc_dropout_runs_in_tflite_micro_with_noise_inputs(micro_mcd, mc_dropout, digits):
    m = micro_mcd.manifest
    assert m["mode"] == "stochastic" and m["verification"]["runtime"] == "tflm"
    # the z-test of the bundle's Monte Carlo mean against Keras MC dropout, run in TFLite Micro
    assert m["verification"]["passed"] and m["verification"]["draws_bundle"] >= 512
    assert not any(o.startswith("RANDOM") or o == "TILE" for ops in m["ops"].values() for o in ops)
    noise = m["noise"]["inputs"]
    assert noise and all(n["distribution"] == "uniform" for n in noise)  # dropout masks u >= rate
    entries = m["stages"][0]["tensors"]["model.tflite"]["inputs"]
    assert {e["name"] for e in entries if e.get("distribution")} == {n["name"] for n in noise}
    assert "TB_MODEL_IN_NOISE_0_NOISE_UNIFORM 1" in (micro_mcd.path / "micro" / "bundle_config.h").read_text()


def test_tflm_noise_is_the_c_library_stream_and_reproducible(micro_mcd, digits):
    from tflbayes.uncertainty.prng import Xoshiro128

    x = digits.x_test[:5]
    a = tb.load_bundle(micro_mcd.path, runtime="tflm", noise_seed=7).sample_probs(x)
    b = tb.load_bundle(micro_mcd.path, runtime="tflm", noise_seed=7)
    assert np.array_equal(a, b.sample_probs(x))
    assert not np.array_equal(a, tb.load_bundle(micro_mcd.path, runtime="tflm", noise_seed=8).sample_probs(x))
    assert np.std(a, axis=0).max() > 1e-3  # the S samples differ: the masks are random
    # the bundle drew exactly its noise inputs' sizes per invoke from xoshiro128** seeded with 7
    per_invoke = sum(int(np.prod(n["shape"])) for n in b.manifest["noise"]["inputs"])
    ref = Xoshiro128(7)
    ref.uniform(per_invoke * len(x))
    assert b.noise.s == ref.s
    # LiteRT fills the same noise inputs from the same stream
    lite = tb.load_bundle(micro_mcd.path, runtime="litert", noise_seed=7).sample_probs(x)
    np.testing.assert_allclose(lite, a, atol=1e-5)


@pytest.mark.skipif(GCC is not None, reason=str(GCC))
def test_micro_folder_compiles_and_its_checksum_catches_an_edited_array(micro_members, tmp_path):
    micro = tmp_path / "micro"
    shutil.copytree(micro_members.path / "micro", micro)
    sources = sorted(micro.glob("*.c"))
    assert {p.name for p in sources} >= {"tflbayes_uq.c", "selftest.c", "member_000_model_data.c", "member_002_model_data.c"}
    exe = toolchain.compile_host(sources, tmp_path / "selftest", include_dirs=[micro])
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "3 graph(s), ok" in r.stdout
    config = (micro / "bundle_config.h").read_text()
    assert "#define TB_NUM_SAMPLES 3" in config and "TB_MEMBER_001_OUT_LOGITS_INDEX 0" in config
    assert "#define TB_THRESHOLD_SCORE_EPISTEMIC 1" in config
    # one byte of one member changed (a damaged flash image or a hand edit): the CRC-32 catches it
    src = micro / "member_001_model_data.c"
    text = src.read_text()
    i = text.index("0x", text.index("{") + 200)
    src.write_text(text[:i] + ("0x01" if text[i:i + 4] != "0x01" else "0x02") + text[i + 4:])
    exe = toolchain.compile_host(sources, tmp_path / "selftest_bad", include_dirs=[micro])
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "CRC-32" in r.stdout


@pytest.mark.parametrize("cpu", sorted(toolchain.CORTEX))
@pytest.mark.skipif(ARM is not None, reason=str(ARM))
def test_micro_folder_cross_compiles_for_cortex_m(micro_members, tmp_path, cpu):
    micro = micro_members.path / "micro"
    for src in sorted(micro.glob("*.c")):
        obj = toolchain.compile_cortex(cpu, [src], tmp_path / f"{src.stem}.o", include_dirs=[micro])
        size = toolchain.code_size(obj)
        if src.name.endswith("_model_data.c"):  # the model lives in flash (.rodata is in text), not RAM
            assert size["text"] >= (micro_members.path / src.name.replace("_model_data.c", ".tflite")).stat().st_size
            assert size["data"] == 0 and size["bss"] == 0


@pytest.mark.skipif(GXX is not None, reason=str(GXX))
def test_example_main_is_valid_cpp_against_the_tflite_micro_api_surface(micro_members, micro_batched, micro_mcd,
                                                                       tmp_path):
    stub = toolchain.TEST_DIR / "tflm_stub"
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "tb_resolver_ops.inc").write_text("".join(f"TB_OP({resolver_method(op)})\n" for op in sorted(TFLM_OPS)))
    for b in (micro_members, micro_batched, micro_mcd):
        micro = b.path / "micro"
        r = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", f"-I{stub}",
                            f"-I{inc}", f"-I{micro}", str(micro / "example_main.cc")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    text = (micro_members.path / "micro" / "example_main.cc").read_text()
    assert "tb_decompose_logits(v_logits, TB_NUM_SAMPLES" in text and "tb_decide(" in text
    assert "AddFullyConnected" in text
    assert "fill_noise(interpreter.input(0)" in (micro_mcd.path / "micro" / "example_main.cc").read_text()


def test_resolver_method_names():
    assert resolver_method("CONV_2D") == "AddConv2D" and resolver_method("BATCH_MATMUL") == "AddBatchMatMul"
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D" and resolver_method("ADD_N") == "AddAddN"
    assert resolver_method("SPACE_TO_BATCH_ND") == "AddSpaceToBatchNd" and resolver_method("LOG_SOFTMAX") == "AddLogSoftmax"


@pytest.mark.parametrize("precision, sparse_layout, match", [
    ("float16", "dense", "float16"), ("dynamic", "dense", "dynamic"), ("edgetpu", "dense", "Edge TPU"),
    ("float32", "tflite", "DENSIFY")])
def test_impossible_micro_bundles_are_refused_before_writing(untrained_ensemble, digits, tmp_path, precision,
                                                           sparse_layout, match):
    out = tmp_path / "never"
    mode = "members" if sparse_layout == "tflite" else "batched"
    with pytest.raises(ConversionError, match=match):
        tb.convert(untrained_ensemble, out, mode=mode, precision=precision, target="micro", sparse_layout=sparse_layout,
                   representative_data=digits.x_train[:32])
    assert not out.exists() and not list(tmp_path.iterdir())


def test_random_ops_are_refused_naming_the_op_and_what_works(untrained_ensemble):
    from tflbayes._keras import tf
    from tflbayes.converters.tflite import to_tflite

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
    def noisy(x):
        return {"y": x * tf.random.uniform([1, 4])}

    blob = to_tflite(noisy, untrained_ensemble.model, "float32")
    with pytest.raises(ConversionError, match="RANDOM_UNIFORM.*noise as graph inputs"):
        check_micro_ops({"model.tflite": blob}, untrained_ensemble, mode="stochastic", precision="float32")


def test_runtime_argument_is_checked(micro_members):
    with pytest.raises(InvalidInputError, match="runtime"):
        tb.load_bundle(micro_members.path, runtime="fpga")


def test_cli_predict_runs_in_tflite_micro(micro_members, digits, tmp_path):
    from click.testing import CliRunner

    from tflbayes.cli.main import cli

    np.save(tmp_path / "x.npy", digits.x_test[:3])
    r = CliRunner().invoke(cli, ["predict", str(micro_members.path), "--input", str(tmp_path / "x.npy"),
                                 "--runtime", "tflm", "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]
    ref = micro_members.predict(digits.x_test[:3])
    assert [row["class"] for row in rows] == [micro_members.class_names[k] for k in ref.label]
    np.testing.assert_allclose([row["epistemic"] for row in rows], ref.epistemic, atol=1e-6)


@pytest.mark.slow
def test_variational_runs_in_tflite_micro_with_normal_noise(variational, digits, tmp_path):
    # VI samples from its first layer: no int8 prefix, refused before writing, saying what works
    with pytest.raises(ConversionError, match="precision='float32' with target='micro'"):
        tb.convert(variational, tmp_path / "vi8", precision="int8", target="micro", num_samples=8,
                   representative_data=digits.x_train[:200])
    assert not (tmp_path / "vi8").exists()
    # float32: the weight noise (local reparameterization) is standard normal graph inputs
    b = tb.convert(variational, tmp_path / "vi", precision="float32", target="micro", num_samples=8,
                   calibration=(digits.x_test[:100], digits.y_test[:100]))
    m = b.manifest
    assert m["verification"]["passed"] and m["verification"]["runtime"] == "tflm"
    assert "normal" in {n["distribution"] for n in m["noise"]["inputs"]}
    assert not any(o.startswith("RANDOM") for ops in m["ops"].values() for o in ops)


def test_a_litert_bundle_with_random_ops_fails_in_tflm_with_the_op_name(mc_dropout, tmp_path):
    # the error names the missing op: TFLite Micro's C stderr is captured into the BundleError
    b = tb.convert(mc_dropout, tmp_path / "mcd", num_samples=4, verify=False)
    assert any(o.startswith("RANDOM") for ops in b.manifest["ops"].values() for o in ops)
    with pytest.raises(BundleError, match="RANDOM_UNIFORM"):
        tb.load_bundle(b.path, runtime="tflm")
