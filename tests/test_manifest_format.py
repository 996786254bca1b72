"""The bundle format (tflbayes.runtime.manifest): tensor map, per-kind meanings, writer, validator, version 1 reader."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import tflbayes as tb
from tflbayes.errors import BundleError
from tflbayes.runtime import manifest as mf


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, untrained_ensemble, digits):
    root = tmp_path_factory.mktemp("manifest")
    out = {}
    for mode, prec in (("batched", "float32"), ("members", "int8"), ("batched", "int8")):
        out[(mode, prec)] = tb.convert(untrained_ensemble, root / f"{mode}-{prec}", mode=mode, precision=prec,
                                       representative_data=digits.x_train[:64], verification_data=digits.x_test[:16])
    return out


def _litert_io(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return it, it.get_input_details(), it.get_output_details()


def test_every_graph_has_a_tensor_map_that_matches_the_interpreter(bundles):
    for b in bundles.values():
        m = b.manifest
        assert m["format_version"] == mf.FORMAT_VERSION == 2 and m["target"] == "litert"
        for st in m["stages"]:
            for f in mf.stage_files(st):
                tmap = st["tensors"][f]
                it, ins, outs = _litert_io(b.path / f)
                for side, dets in (("inputs", ins), ("outputs", outs)):
                    entries = tmap[side]
                    assert [e["index"] for e in entries] == list(range(len(dets)))
                    for e in entries:
                        det = dets[e["index"]]
                        assert e["tensor_index"] == det["index"]
                        assert e["shape"] == det["shape"].tolist() and e["dtype"] == np.dtype(det["dtype"]).name
                        q = det["quantization_parameters"]["scales"]
                        assert (e["quantization"] is None) == (len(q) == 0)
                        if e["quantization"]:
                            assert e["quantization"]["scale"] == pytest.approx(float(q[0]))
                # the names are the signature's, so a device can look an output up by name
                sig = it.get_signature_runner()
                assert {e["name"] for e in tmap["outputs"]} == set(sig.get_output_details())
                assert {e["name"] for e in tmap["inputs"]} == set(sig.get_input_details())


def test_int8_input_quantization_comes_from_the_tensor_map(bundles):
    for key in (("members", "int8"), ("batched", "int8")):
        m = bundles[key].manifest
        st = m["stages"][0]
        x = next(e for e in st["tensors"][mf.stage_files(st)[0]]["inputs"] if e["name"] == "x")
        assert m["input"]["quantization"] == x["quantization"] and x["dtype"] == "int8"
        assert m["verification"]["kernels"]["reference"]["passed"] and m["verification"]["kernels"]["xnnpack"]["passed"]


def test_version_1_bundles_still_load_and_upgrade(bundles, digits, tmp_path):
    import shutil

    src = bundles[("batched", "int8")]
    old = tmp_path / "v1"
    shutil.copytree(src.path, old)
    m = copy.deepcopy(src.manifest)
    m["format_version"] = 1
    del m["target"]
    m.pop(mf.SEAL, None)  # version 1 had no seal
    for st in m["stages"]:
        st.pop("tensors", None)
    (old / "manifest.json").write_text(json.dumps(m))
    b1 = tb.load_bundle(old)
    np.testing.assert_allclose(b1.predict(digits.x_test[:8]).probs, src.predict(digits.x_test[:8]).probs, atol=1e-6)
    up = mf.upgrade_manifest(b1.manifest, old)
    assert up["format_version"] == 2 and up["target"] == "litert"
    assert [st.get("tensors") for st in up["stages"]] == [st.get("tensors") for st in src.manifest["stages"]]
    assert b1.manifest["format_version"] == 1  # the upgrade is a copy
    assert mf.upgrade_manifest(b1.manifest)["stages"][0]["tensors"] is None


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(format_version=3), "format_version 3"),
    (lambda m: m.update(target="fpga"), "target"),
    (lambda m: m.pop("target"), "target"),
    (lambda m: m["stages"][0].pop("tensors"), "tensors"),
    (lambda m: m["stages"][0]["tensors"].clear(), "model.tflite"),
    (lambda m: m["stages"][0]["tensors"]["model.tflite"]["inputs"][0].update(quantization={"scale": "x"}), "quantization"),
    (lambda m: m["stages"][0]["tensors"]["model.tflite"]["outputs"][0].pop("index"), "index"),
    (lambda m: m["stages"][0]["tensors"]["model.tflite"]["inputs"][0].update(distribution="cauchy"), "distribution"),
    (lambda m: m.update(micro=[1]), "micro"),
])
def test_validation_names_the_broken_field(bundles, edit, field):
    m = copy.deepcopy(bundles[("batched", "float32")].manifest)
    edit(m)
    with pytest.raises(BundleError, match=field):
        mf.validate_manifest(m, "manifest.json")


def test_write_manifest_refuses_an_invalid_manifest_and_writes_nothing(bundles, tmp_path):
    m = copy.deepcopy(bundles[("batched", "float32")].manifest)
    m["num_samples"] = 0
    with pytest.raises(BundleError, match="num_samples"):
        mf.write_manifest(tmp_path, m)
    assert not (tmp_path / "manifest.json").exists()
    m["num_samples"] = 3
    assert json.loads(mf.write_manifest(tmp_path, m).read_text()) == mf.seal(m)


def test_the_seal_catches_an_edit_of_any_field(bundles, tmp_path):
    """A field edited after conversion (a threshold, a class name, an added or removed field) is
    refused naming the field; an unsealed manifest (older bundles) still loads, marked unsealed."""
    import shutil

    src = bundles[("batched", "float32")]
    assert tb.load_bundle(src.path).sealed is True
    edits = {
        "verification": lambda m: m["verification"].__setitem__("data", "forged"),
        "class_names": lambda m: m["class_names"].__setitem__(0, m["class_names"][0] + "x"),
        "comment": lambda m: m.__setitem__("comment", "added"),
        "provenance": lambda m: m.pop("provenance"),
    }
    for i, (field, fn) in enumerate(edits.items()):
        case = tmp_path / f"case{i}"
        shutil.copytree(src.path, case)
        m = json.loads((case / "manifest.json").read_text())
        fn(m)
        (case / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(BundleError, match=f"`{field}`"):
            tb.load_bundle(case)
    unsealed = tmp_path / "unsealed"
    shutil.copytree(src.path, unsealed)
    m = json.loads((unsealed / "manifest.json").read_text())
    del m[mf.SEAL]
    (unsealed / "manifest.json").write_text(json.dumps(m))
    assert tb.load_bundle(unsealed).sealed is False


def test_output_meanings_are_right_for_each_kind():
    sample = mf.output_meanings("ensemble", ["probs", "epistemic"])
    assert "mean over the S samples" in sample["probs"]
    for kind in ("dirichlet", "distilled", "laplace"):
        meanings = mf.output_meanings(kind, ["probs", "total", "aleatoric", "epistemic"])
        assert all("S samples" not in v for v in meanings.values()), (kind, meanings)
    assert "psi" in mf.output_meanings("dirichlet", ["aleatoric"])["aleatoric"]
    assert "GPED" in mf.output_meanings("distilled", ["aleatoric"])["aleatoric"]
