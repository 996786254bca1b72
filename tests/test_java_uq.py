"""The Android library ``android_demo/uq`` (plain Java): compiled with javac and its JUnit 4 tests run here.

The JUnit tests check the Java maths against the shared golden vectors (tests/golden) and replay the
recorded outputs of real bundles of every kind (android_demo/uq/src/test/resources/bundles, written by
``android_demo/uq/tools/make_fixtures.py``). Needs a JDK (javac, java) and JUnit 4 + Hamcrest
(Debian: ``apt-get install junit4 libhamcrest-java``, or ``TFLBAYES_JUNIT_CP`` with the jars).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tflbayes as tb

ROOT = Path(__file__).resolve().parents[1]
UQ = ROOT / "android_demo" / "uq"
FIXTURES = UQ / "src" / "test" / "resources" / "bundles"
GOLDEN = ROOT / "tests" / "golden" / "uncertainty_golden.json"
MIN_JUNIT_TESTS = 58  # the count when this file was written: fewer means tests were lost


def _junit_classpath():
    env = os.environ.get("TFLBAYES_JUNIT_CP")
    if env:
        return env
    jars = [Path("/usr/share/java/junit4.jar"), Path("/usr/share/java/hamcrest-core.jar")]
    return os.pathsep.join(map(str, jars)) if all(j.is_file() for j in jars) else None


def _toolchain():
    javac, java, cp = shutil.which("javac"), shutil.which("java"), _junit_classpath()
    if not (javac and java):
        pytest.skip("no JDK here (javac/java not on PATH): the Java library android_demo/uq is not tested")
    if cp is None:
        pytest.skip("JUnit 4 not found (apt-get install junit4 libhamcrest-java, or set TFLBAYES_JUNIT_CP)")
    return javac, java, cp


def _sources(part):
    return sorted(str(p) for p in (UQ / "src" / part / "java").rglob("*.java"))


def _javac(javac, out, files, cp=None):
    cmd = [javac, "--release", "8", "-Xlint:all,-options", "-Werror", "-encoding", "UTF-8", "-d", str(out)]
    if cp:
        cmd += ["-cp", cp]
    proc = subprocess.run(cmd + files, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _run_junit(tmp_path, fixtures=FIXTURES):
    javac, java, cp = _toolchain()
    classes = tmp_path / "classes"
    _javac(javac, classes, _sources("main") + _sources("test"), cp)
    classes_cp = os.pathsep.join([str(classes), cp])
    proc = subprocess.run([java, f"-Dtflbayes.golden={GOLDEN}", f"-Dtflbayes.fixtures={fixtures}", "-cp", classes_cp,
                           "org.junit.runner.JUnitCore", "org.tflbayes.uq.GoldenVectorsTest",
                           "org.tflbayes.uq.ManifestTest", "org.tflbayes.uq.BundleFixturesTest"],
                          capture_output=True, text=True, timeout=300)
    return proc


def test_junit_tests_pass_on_golden_vectors_and_real_bundles(tmp_path):
    proc = _run_junit(tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    m = re.search(r"OK \((\d+) tests\)", out)
    assert m and int(m.group(1)) >= MIN_JUNIT_TESTS, out[-2000:]


def test_the_library_needs_nothing_android_lacks(tmp_path):
    javac, _, _ = _toolchain()
    _javac(javac, tmp_path / "main", _sources("main"))  # no JUnit, no org.json, nothing but the JDK
    imports = set()
    for f in _sources("main"):
        imports |= set(re.findall(r"^import\s+(?:static\s+)?([\w.]+)", Path(f).read_text(), re.M))
    assert imports and all(i.startswith("java.util.") for i in imports), sorted(imports)


# -- the committed fixtures still describe what the converter writes ---------------------------------------
def _paths(obj, prefix="") -> set:
    """Key paths of a JSON value; list items collapse to ``[]``; file-name keys to ``<file>``."""
    out = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = "<file>" if k.endswith(".tflite") else k
            out.add(prefix + key)
            out |= _paths(v, prefix + key + ".")
    elif isinstance(obj, list):
        for v in obj:
            out |= _paths(v, prefix + "[].")
    return out


# what BundleManifest.java / TensorMaps.java / Decision.java read
JAVA_READS = {
    "format", "format_version", "target", "mode", "precision", "num_samples", "class_names", "input",
    "input.shape", "input.dtype", "postprocessing", "stages", "stages.[].kind", "stages.[].inputs",
    "stages.[].outputs", "stages.[].runs_on", "stages.[].tensors", "stages.[].tensors.<file>",
    "stages.[].tensors.<file>.inputs", "stages.[].tensors.<file>.outputs",
    "stages.[].tensors.<file>.inputs.[].name", "stages.[].tensors.<file>.inputs.[].index",
    "stages.[].tensors.<file>.inputs.[].tensor_index", "stages.[].tensors.<file>.inputs.[].shape",
    "stages.[].tensors.<file>.inputs.[].dtype", "stages.[].tensors.<file>.inputs.[].quantization",
    "stages.[].tensors.<file>.outputs.[].name", "stages.[].tensors.<file>.outputs.[].index",
    "stages.[].tensors.<file>.outputs.[].shape", "stages.[].tensors.<file>.outputs.[].dtype",
    "stages.[].tensors.<file>.outputs.[].quantization", "thresholds", "thresholds.score", "thresholds.epistemic",
}
INT8_READS = {"input.quantization", "input.quantization.scale", "input.quantization.zero_point",
              "stages.[].tensors.<file>.outputs.[].quantization.scale",
              "stages.[].tensors.<file>.outputs.[].quantization.zero_point"}


def _fixture_manifest(name):
    return json.loads(json.loads((FIXTURES / f"{name}.json").read_text())["manifest_json"])


@pytest.mark.parametrize("mode, precision", [("members", "float32"), ("batched", "int8")])
def test_committed_fixtures_match_the_current_manifest_format(tmp_path, untrained_ensemble, digits, mode, precision):
    fresh = tb.convert(untrained_ensemble, tmp_path / "b", mode=mode, precision=precision,
                       representative_data=digits.x_train[:100], calibration=(digits.x_test[:100], digits.y_test[:100]),
                       verify=False).manifest
    committed = _fixture_manifest(f"{mode}-{precision}")
    needed = JAVA_READS | (INT8_READS if precision == "int8" else set())
    got_fresh, got_committed = _paths(fresh), _paths(committed)
    assert needed <= got_fresh, f"the converter no longer writes {sorted(needed - got_fresh)}: update the Java reader"
    assert needed <= got_committed, f"the fixtures lack {sorted(needed - got_committed)}"
    assert committed["format_version"] == fresh["format_version"], (
        "the manifest format changed: regenerate the fixtures with "
        ".venv/bin/python android_demo/uq/tools/make_fixtures.py")
    assert [st["kind"] for st in committed["stages"]] == [st["kind"] for st in fresh["stages"]]
    assert [st["outputs"] for st in committed["stages"]] == [st["outputs"] for st in fresh["stages"]]


def test_every_bundle_kind_has_a_fixture():
    names = {p.stem for p in FIXTURES.glob("*.json")}
    assert names == {f"{m}-{p}" for m in ("members", "batched", "stochastic", "dirichlet")
                     for p in ("float32", "int8")} | {"batched-edgetpu"}
    for name in names:
        fx = json.loads((FIXTURES / f"{name}.json").read_text())
        assert fx["generated_by"] == "android_demo/uq/tools/make_fixtures.py"
        assert len(fx["inputs"]) >= 3 and (FIXTURES / f"{name}.json").stat().st_size < 40_000
        assert any(r["python"]["decision"] == "abstain" for r in fx["inputs"]), name


@pytest.mark.slow
def test_regenerated_fixtures_pass_the_junit_tests(tmp_path):
    """Regenerate every fixture with the current converter and runtime and replay them in Java (~3 min)."""
    _toolchain()
    out = tmp_path / "fixtures"
    proc = subprocess.run([sys.executable, str(UQ / "tools" / "make_fixtures.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-4000:]
    junit = _run_junit(tmp_path, fixtures=out)
    assert junit.returncode == 0, (junit.stdout + junit.stderr)[-6000:]


def test_copy_bundles_script_fills_the_app_assets(tmp_path, tiny_bundle):
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX sh here: android_demo/copy_bundles.sh cannot run")
    src = Path(shutil.copytree(tiny_bundle, tmp_path / "ens-batched"))
    (src / "model_edgetpu.tflite").write_bytes(b"compiled for Coral")  # must be left out
    assets = tmp_path / "assets"
    env = {**os.environ, "TFLBAYES_ASSETS": str(assets)}
    script = str(ROOT / "android_demo" / "copy_bundles.sh")
    proc = subprocess.run([sh, script, str(src)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (assets / "ens-batched").iterdir()) == ["manifest.json", "model.tflite"]
    assert (assets / "ens-batched" / "model.tflite").read_bytes() == (src / "model.tflite").read_bytes()
    tb.load_bundle(assets / "ens-batched")  # the copy is a valid bundle (checksums match)
    proc = subprocess.run([sh, script, str(tmp_path)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1 and "no manifest.json" in proc.stderr
    assert sorted(p.name for p in assets.iterdir()) == ["ens-batched"]  # nothing half-written
