"""The mode="dirichlet" LiteRT graph: digamma from builtin ops, the Dirichlet head, the student graph."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import digamma as scipy_digamma

from tflbayes._keras import keras, tf
from tflbayes.architectures import cnn, mlp
from tflbayes.converters.graphs import dirichlet as graph
from tflbayes.converters.tflite import op_names, to_tflite
from tflbayes.errors import ConversionError
from tflbayes.posterior.dirichlet import LOG_ALPHA_MAX, LOG_ALPHA_MIN, DirichletPosterior, alpha_from_logits
from tflbayes.uncertainty import dirichlet_decompose

from _litert import interpreter, run

# Ops a graph may contain: builtins only (a Flex op shows up as "CUSTOM:...").
HEAD_OPS = {"ADD", "CONCATENATION", "DIV", "EXP", "LOG", "MAXIMUM", "MINIMUM", "MUL", "RELU", "RESHAPE", "SUB", "SUM",
            "EXPAND_DIMS"}


def _run(blob: bytes, **inputs) -> dict:
    return run(blob, dtype=np.float64, **inputs)


def _student(build, seed=0) -> DirichletPosterior:
    keras.utils.set_random_seed(seed)
    return DirichletPosterior(build((8, 8, 1), 10), class_names=[f"c{i}" for i in range(10)])


def test_digamma_from_builtins_matches_scipy_on_1e3_to_1e4():
    """|psi_litert - psi_scipy| <= 1e-5 * max(1, |psi|): absolute near the root (x ~ 1.46), relative elsewhere."""
    x = np.concatenate([np.geomspace(1e-3, 1e4, 20001), np.linspace(1.40, 1.52, 2001)]).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([len(x)], tf.float32, name="x")])
    def fn(x):
        return {"psi": graph.digamma(x)}

    blob = to_tflite(fn, tf.Module())
    assert set(op_names(blob)) <= HEAD_OPS
    psi = _run(blob, x=x)["psi"]
    ref = scipy_digamma(x.astype(np.float64))
    err = np.abs(psi - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() <= 1e-5, f"max error {err.max():.3g} at x={x[err.argmax()]}"


@pytest.mark.parametrize("offset", [1.0, 0.5])
def test_digamma_offset_shifts_the_argument(offset):
    x = np.geomspace(1e-3, 1e4, 500).astype(np.float32)
    got = graph.digamma(tf.constant(x), offset=offset).numpy().astype(np.float64)
    ref = scipy_digamma(x.astype(np.float64) + offset)
    assert np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))) <= 1e-5


def test_dirichlet_head_in_litert_equals_dirichlet_decompose():
    rng = np.random.default_rng(0)
    b, c = 64, 10
    # logits across (and beyond) the clip range, plus confident and flat rows
    z = rng.uniform(LOG_ALPHA_MIN - 2, LOG_ALPHA_MAX + 2, size=(b, c)).astype(np.float32)
    z[0] = LOG_ALPHA_MIN
    z[1] = LOG_ALPHA_MAX
    z[2] = np.r_[LOG_ALPHA_MAX, np.full(c - 1, LOG_ALPHA_MIN)]
    z[3] = 0.0
    z[4:20] = rng.normal(0.0, 0.3, size=(16, c))
    blob = to_tflite(graph.dirichlet_head_fn(b, c), tf.Module())
    assert set(op_names(blob)) <= HEAD_OPS
    out = _run(blob, alpha_logits=z)
    alpha = alpha_from_logits(z)
    np.testing.assert_allclose(out["alpha"], alpha, rtol=1e-5)
    np.testing.assert_allclose(out["probs"], alpha / alpha.sum(-1, keepdims=True), atol=1e-6)
    for name, ref in zip(("total", "aleatoric", "epistemic"), dirichlet_decompose(alpha)):
        assert np.max(np.abs(out[name] - ref)) <= 1e-4, name
    assert np.all(out["epistemic"] >= 0)


@pytest.mark.parametrize("build", [mlp, cnn], ids=["mlp", "cnn"])
def test_student_graph_matches_posterior_predict(build):
    student = _student(build)
    fn = graph.build_dirichlet(student, batch_size=4)
    blob = to_tflite(fn, student.model)
    ops = op_names(blob)
    assert not [o for o in ops if o.startswith("CUSTOM")], ops
    x = np.random.default_rng(1).random((4, 8, 8, 1)).astype(np.float32)
    out = _run(blob, x=x)
    assert set(out) == {"probs", "total", "aleatoric", "epistemic", "alpha"}
    ref = student.predict(x)
    np.testing.assert_allclose(out["probs"], ref.probs, atol=1e-5)
    np.testing.assert_allclose(out["alpha"], student.alpha(x), rtol=1e-4)
    for name in ("total", "aleatoric", "epistemic"):
        assert np.max(np.abs(out[name] - getattr(ref, name))) <= 1e-4, name


def test_int8_body_and_float_head():
    """int8 / Edge TPU split: an integer body returning alpha_logits, the float head on the CPU."""
    from tflbayes.converters.tflite import representative_factory

    student = _student(mlp, seed=2)
    rng = np.random.default_rng(2)
    x = rng.random((64, 8, 8, 1)).astype(np.float32)
    body = to_tflite(graph.build_dirichlet(student, batch_size=1, head=False), student.model, "int8",
                     representative_factory(x, 1))
    head = to_tflite(graph.dirichlet_head_fn(1, 10), tf.Module())
    body_run = interpreter(body).get_signature_runner()
    det_in, det_out = body_run.get_input_details()["x"], body_run.get_output_details()["alpha_logits"]
    (s_in,), (zp_in,) = det_in["quantization_parameters"]["scales"], det_in["quantization_parameters"]["zero_points"]
    q_out = det_out["quantization_parameters"]
    (s_out,), (zp_out,) = q_out["scales"], q_out["zero_points"]
    agree = []
    for xi in x[:32]:
        q = np.clip(np.round(xi[None] / s_in + zp_in), -128, 127).astype(np.int8)
        z = (body_run(x=q)["alpha_logits"].astype(np.float32) - zp_out) * s_out
        out = _run(head, alpha_logits=z.astype(np.float32))
        agree.append(out["probs"].argmax() == student.predict(xi[None]).label[0])
    assert np.mean(agree) >= 0.9


def test_refuses_other_posteriors():
    from tflbayes.posterior import EnsemblePosterior

    model = mlp((8, 8, 1), 10)
    ens = EnsemblePosterior(model, [model.get_weights()])
    with pytest.raises(ConversionError, match="DirichletPosterior"):
        graph.build_dirichlet(ens)


def test_tb_convert_dirichlet_mode(tmp_path):
    """End to end through tb.convert: the bundle predicts what the student does."""
    import tflbayes as tb

    student = _student(cnn, seed=3)
    x = np.random.default_rng(3).random((20, 8, 8, 1)).astype(np.float32)
    bundle = tb.convert(student, tmp_path / "b", mode="dirichlet", verification_data=x)
    pred, ref = bundle.predict(x), student.predict(x)
    np.testing.assert_allclose(pred.probs, ref.probs, atol=1e-4)
    for name in ("total", "aleatoric", "epistemic"):
        assert np.max(np.abs(getattr(pred, name) - getattr(ref, name))) <= 1e-4
    assert bundle.manifest["verification"]["passed"] is True
