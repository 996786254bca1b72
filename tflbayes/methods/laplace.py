"""Last-layer Laplace approximation (MacKay 1992; Daxberger et al. 2021, "Laplace Redux").

Around a trained network ``f(x) = W~ᵀ [phi(x); 1]`` (``phi``: the features entering the last Dense
layer, ``W~ = [W; b]``, ``P = (D+1) C`` parameters) the posterior over the last layer is

    p(theta | D) ≈ N(theta*, (H + delta I)^-1),

``H`` the generalised Gauss-Newton matrix of the cross-entropy (``hessian="ggn"``, equal to the
Fisher for the softmax likelihood: ``H = sum_n (phi~_n phi~_nᵀ) ⊗ Lambda_n``,
``Lambda_n = diag(p_n) - p_n p_nᵀ``) or the empirical Fisher (``"ef"``: ``Lambda_n = g_n g_nᵀ``,
``g_n = p_n - onehot(y_n)``), in one of two structures:

- ``"diag"``: ``H_(d,c) = sum_n phi~_{n,d}² Lambda_n[c, c]``;
- ``"kron"`` (KFAC, Martens & Grosse 2015): ``H ≈ A ⊗ G``, ``A = sum_n phi~_n phi~_nᵀ``,
  ``G = (1/N) sum_n Lambda_n``, so ``H + delta I`` is inverted through the eigenbases of A and G.

The prior precision ``delta`` (an isotropic Gaussian prior ``N(0, delta^-1 I)``) is chosen by the
Laplace approximation of the marginal likelihood,

    log p(D | delta) ≈ log p(D | theta*) - delta/2 |theta*|² + P/2 log delta - 1/2 sum_k log(lambda_k + delta),

(``lambda_k`` the eigenvalues of ``H``), maximised over ``ln delta`` on a grid (``optimize="grid"``,
81 points in ``[1e-4, 1e4]``) or by L-BFGS with its analytic gradient (``"gradient"``).
``prior_precision="val"`` instead picks, on the same grid, the ``delta`` whose predictive (the link;
probit for ``"mc"``) has the lowest NLL on held-out data (laplace-torch's grid search): a network
trained without weight decay fits its training data so well that the curvature there is tiny, and
the evidence then prefers a wide, underconfident posterior.
"""
from __future__ import annotations

import numbers

import numpy as np
from scipy import optimize as sopt
from scipy.special import log_softmax

from tflbayes._checks import check_choice, check_inputs, check_labels, check_positive_int
from tflbayes._keras import keras
from tflbayes.errors import InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.registry import register_method
from tflbayes.posterior.base import forward, softmax
from tflbayes.posterior.laplace import LINKS, LaplacePosterior

__all__ = ["fit_laplace", "log_marginal_likelihood", "curvature", "HESSIANS", "OPTIMIZERS"]

HESSIANS = ("ggn", "ef")
OPTIMIZERS = ("grid", "gradient")
STRUCTURES = ("diag", "kron")
_GRID = np.linspace(np.log(1e-4), np.log(1e4), 81)


def _last_dense(model):
    last = model.layers[-1]
    if type(last) is not keras.layers.Dense:
        raise InvalidInputError(
            f"Last-layer Laplace needs a model whose last layer is a Dense layer that outputs logits; the last layer "
            f"is {last.name!r} ({type(last).__name__}).")
    if keras.activations.serialize(last.activation) not in ("linear", None):
        raise InvalidInputError(
            f"The last Dense layer {last.name!r} has activation {keras.activations.serialize(last.activation)!r}; "
            "last-layer Laplace needs logits (activation=None).")
    if not last.use_bias:
        raise InvalidInputError(f"The last Dense layer {last.name!r} has no bias; last-layer Laplace needs one.")
    return last


def curvature(phi, logits, y, structure: str = "kron", hessian: str = "ggn") -> dict:
    """The last layer's curvature from features ``phi [N, D]``, logits ``[N, C]`` and labels ``y``.

    Returns ``{"h": [D+1, C]}`` (diag) or ``{"a", "u_a", "g", "u_g"}`` (kron: eigenvalues and
    eigenvectors of ``A`` and ``G``), float64.
    """
    phi = np.concatenate([np.asarray(phi, np.float64), np.ones((len(phi), 1))], axis=1)
    p = softmax(np.asarray(logits, np.float64))
    n, c = p.shape
    if hessian == "ef":
        g = p - np.eye(c)[y]
    if structure == "diag":
        lam = p * (1.0 - p) if hessian == "ggn" else g ** 2
        return {"h": (phi ** 2).T @ lam}
    a_mat = phi.T @ phi
    g_mat = (np.diag(p.sum(0)) - p.T @ p) / n if hessian == "ggn" else g.T @ g / n
    a, u_a = np.linalg.eigh(a_mat)
    gv, u_g = np.linalg.eigh(g_mat)
    return {"a": np.maximum(a, 0.0), "u_a": u_a, "g": np.maximum(gv, 0.0), "u_g": u_g}


def _eigenvalues(curv) -> np.ndarray:
    return curv["h"].reshape(-1) if "h" in curv else np.outer(curv["a"], curv["g"]).reshape(-1)


def log_marginal_likelihood(log_delta, log_lik: float, theta_sq: float, eig: np.ndarray):
    """The Laplace evidence (module docstring) at ``delta = exp(log_delta)`` and its derivative in ``log_delta``."""
    delta = float(np.exp(log_delta))
    p = eig.size
    value = log_lik - 0.5 * delta * theta_sq + 0.5 * p * log_delta - 0.5 * np.sum(np.log(eig + delta))
    grad = -0.5 * delta * theta_sq + 0.5 * p - 0.5 * delta * np.sum(1.0 / (eig + delta))
    return float(value), float(grad)


def _tune(log_lik, theta_sq, eig, how: str) -> float:
    if how == "grid":
        values = [log_marginal_likelihood(t, log_lik, theta_sq, eig)[0] for t in _GRID]
        return float(np.exp(_GRID[int(np.argmax(values))]))
    res = sopt.minimize(lambda t: tuple(-v for v in log_marginal_likelihood(t[0], log_lik, theta_sq, eig)),
                        x0=[0.0], jac=True, method="L-BFGS-B", bounds=[(_GRID[0], _GRID[-1])])
    return float(np.exp(res.x[0]))


def _logit_variance(phi, curv, delta):
    """``[N, C]`` logit variances of features ``phi`` at prior precision ``delta`` (LaplaceHead's maths)."""
    phit = np.concatenate([phi, np.ones((len(phi), 1))], axis=1)
    if "h" in curv:
        return (phit ** 2) @ (1.0 / (curv["h"] + delta))
    k = 1.0 / (np.outer(curv["a"], curv["g"]) + delta)
    return ((phit @ curv["u_a"]) ** 2) @ k @ (curv["u_g"] ** 2).T


def _tune_on_validation(phi_val, logits_val, y_val, curv, link) -> float:
    from tflbayes.posterior.dirichlet import alpha_from_logits
    from tflbayes.posterior.laplace import bridge_log_alpha, probit_probs

    best, best_nll = None, np.inf
    for t in _GRID:
        var = _logit_variance(phi_val, curv, float(np.exp(t)))
        if link == "bridge":
            a = alpha_from_logits(bridge_log_alpha(logits_val, var))
            p = a / a.sum(-1, keepdims=True)
        else:
            p = probit_probs(logits_val, var)
        nll = -np.mean(np.log(np.maximum(p[np.arange(len(y_val)), y_val], 1e-300)))
        if nll < best_nll:
            best, best_nll = float(np.exp(t)), nll
    return best


def fit_laplace(model, data, *, structure: str = "kron", hessian: str = "ggn", prior_precision="marglik",
                optimize: str = "grid", link: str = "probit", num_samples: int = 100, class_names=None,
                method: str = "laplace", options=None, validation_data=None) -> LaplacePosterior:
    """A last-layer Laplace posterior around the trained Keras ``model`` (module docstring).

    Args:
        model: a trained Sequential/functional model whose last layer is a Dense producing logits.
        data: ``(x, y)``, the training data (the curvature is a sum over it).
        structure: ``"kron"`` (KFAC) or ``"diag"``.
        hessian: ``"ggn"`` (= Fisher) or ``"ef"`` (empirical Fisher).
        prior_precision: ``"marglik"`` (tuned by the evidence), ``"val"`` (by held-out NLL; needs
            ``validation_data``) or a float > 0.
        optimize: ``"grid"`` or ``"gradient"`` (how ``"marglik"`` is maximised).
        link: ``"probit"``, ``"bridge"`` or ``"mc"`` (the predictive of the posterior).
        num_samples: S of the MC predictive.
        validation_data: ``(x_val, y_val)`` for ``prior_precision="val"``.

    Returns:
        A :class:`~tflbayes.posterior.laplace.LaplacePosterior` (its model shares the trained layers).

    Example:
        >>> post = tb.laplace(model, (x_train, y_train), structure="diag", link="bridge")   # doctest: +SKIP
    """
    from tflbayes.layers.laplace import LaplaceHead

    check_choice("structure", structure, STRUCTURES)
    check_choice("hessian", hessian, HESSIANS)
    check_choice("optimize", optimize, OPTIMIZERS)
    check_choice("link", link, LINKS)
    num_samples = check_positive_int("num_samples", num_samples)
    fixed = prior_precision not in ("marglik", "val")
    if prior_precision == "val" and validation_data is None:
        raise InvalidInputError("prior_precision='val' tunes the prior on held-out data: pass validation_data=(x_val, y_val).")
    if fixed and (isinstance(prior_precision, bool) or not isinstance(prior_precision, numbers.Real)
                  or not prior_precision > 0):
        raise InvalidInputError(
            "Invalid value received for argument `prior_precision`. Expected 'marglik', 'val' or a float > 0. "
            f"Received: prior_precision={prior_precision!r}")
    if not isinstance(model, keras.Model) or (not isinstance(model, keras.Sequential)
                                              and not getattr(model, "_is_graph_network", False)):
        raise InvalidInputError(f"`model` must be a Sequential or functional Keras model. Received: {type(model).__name__}")
    last = _last_dense(model)
    try:
        x, y = data
    except (TypeError, ValueError):
        raise InvalidInputError("`data` must be a tuple (x, y) of training inputs and integer labels.") from None
    x = check_inputs(x, tuple(model.input_shape[1:]), "data[0]")
    y = check_labels(y, len(x), int(model.output_shape[-1]), name="data[1]")
    feats = keras.Model(model.inputs, last.input)
    phi = forward(feats, x)
    kernel, bias = (w.astype(np.float64) for w in last.get_weights())
    logits = phi @ kernel + bias
    curv = curvature(phi, logits, y, structure, hessian)
    eig = _eigenvalues(curv)
    log_lik = float(log_softmax(logits, axis=-1)[np.arange(len(y)), y].sum())
    theta_sq = float(np.sum(kernel ** 2) + np.sum(bias ** 2))
    if prior_precision == "val":
        xv, yv = validation_data
        xv = check_inputs(xv, tuple(model.input_shape[1:]), "validation_data[0]")
        yv = check_labels(yv, len(xv), int(model.output_shape[-1]), name="validation_data[1]")
        phi_v = forward(feats, xv)
        delta = _tune_on_validation(phi_v, phi_v @ kernel + bias, yv, curv, link)
    else:
        delta = float(prior_precision) if fixed else _tune(log_lik, theta_sq, eig, optimize)
    evidence = log_marginal_likelihood(np.log(delta), log_lik, theta_sq, eig)[0]

    c = kernel.shape[1]
    head = LaplaceHead(c, structure=structure, name="laplace_head")
    out = head(last.input)
    lmodel = keras.Model(model.inputs, out, name=f"{model.name}_laplace")
    if structure == "diag":
        cov = [1.0 / (curv["h"] + delta)]
    else:
        cov = [curv["u_a"], 1.0 / (np.outer(curv["a"], curv["g"]) + delta), curv["u_g"]]
    head.set_weights([w.astype(np.float32) for w in (kernel, bias, *cov)])
    opts = {**(options or {}), "structure": structure, "hessian": hessian, "link": link,
            "prior_precision": delta,
            "prior_precision_tuning": "fixed" if fixed else "validation" if prior_precision == "val" else optimize,
            "log_marginal_likelihood": evidence, "num_samples": num_samples}
    return LaplacePosterior(lmodel, method, opts, class_names)


@register_method(
    "laplace",
    defaults={"structure": "kron", "hessian": "ggn", "prior_precision": "marglik", "optimize": "grid",
              "link": "probit", "num_samples": 100},
    summary="MAP network, then a Gaussian over its last layer (diag / KFAC GGN, prior by marginal likelihood)",
)
def train_laplace(build_model, x, y, cfg, **options):
    """Train the network (MAP, the usual Keras loop), then fit :func:`fit_laplace` on the training data."""
    for k, choices in (("structure", STRUCTURES), ("hessian", HESSIANS), ("optimize", OPTIMIZERS), ("link", LINKS)):
        check_choice(k, options[k], choices)
    if options["prior_precision"] == "val" and cfg.validation_data is None:
        raise InvalidInputError("prior_precision='val' needs validation_data=(x_val, y_val) in tb.fit.")
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        model = training.build(build_model, x.shape[1:], y)
        _last_dense(model)  # refuse before training
        training.compile_classifier(model, cfg.learning_rate)
    training.train(model, x, y, cfg, what="network (Laplace MAP)")
    return fit_laplace(model, (x, y), class_names=cfg.class_names, validation_data=cfg.validation_data, **options)
