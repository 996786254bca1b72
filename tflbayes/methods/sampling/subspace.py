"""Subspace inference (Izmailov, Maddox, Kirichenko, Garipov, Vetrov & Wilson 2019,
"Subspace Inference for Bayesian Deep Learning", UAI).

1. SGD (heavy-ball momentum, the Gaussian prior as weight decay) for ``pretrain × epochs`` epochs,
   then ``iterates`` weight snapshots, evenly spaced, over the remaining epochs (same constant
   learning rate, as in SWA/SWAG), collected by a :class:`SampleCollector` in one ``model.fit`` run.
2. An affine subspace ``w(z) = ŵ + Pᵀ z`` through their mean ``ŵ`` (SWA), ``P`` with ``rank``
   orthonormal rows: the top principal directions of the iterates' deviations (``"pca"``,
   §3.2) or random directions (``"random"``, §3.1).
3. MCMC on ``z`` for the subspace posterior ``p(z | D) ∝ p(D | w(z)) p(w(z))``; the Gaussian weight
   prior restricted to the subspace is ``z ~ N(-P ŵ, prior_std² I)`` (P orthonormal), and with a
   temperature both factors are tempered: ``p(z | D)^(1/T)``.
   * ``"ess"``: elliptical slice sampling (Murray, Adams & MacKay 2010) on the full-data
     likelihood: no step size to tune, exact in the subspace.
   * ``"sgld"``: SGLD on ``z`` with mini-batches, ``∇_z Ũ = P ∇_w Ũ`` (step size in the same
     units as the ``sgld`` method, see :class:`~tflbayes.methods.sampling.SGLD`).
4. Each sample ``z_s`` is projected back to full weights ``ŵ + Pᵀ z_s``: an ``EnsemblePosterior``.

Under a ``tf.distribute.Strategy`` the SGD phase (nearly all the compute) is distributed; the
low-dimensional sampling runs on one device, on a plain copy of the model.

With ``rank`` equal to the number of weights the subspace is the whole space and the samples
follow the exact posterior (the tests use this on linear and logistic regression).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from tflbayes._checks import check_choice, check_positive_int
from tflbayes._keras import tf
from tflbayes.errors import DivergenceError, InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.budget import is_auto
from tflbayes.methods.registry import register_method
from tflbayes.methods.sampling import _options
from tflbayes.methods.sampling._chain import build_compiled, posterior_of, run_chain
from tflbayes.methods.sampling.collect import collection_steps
from tflbayes.methods.sampling.optimizers import SGHMC

__all__ = ["train_subspace", "Subspace", "make_subspace", "elliptical_slice_chain", "SUBSPACES", "SUBSPACE_SAMPLERS"]

SUBSPACES = ("pca", "random")
SUBSPACE_SAMPLERS = ("ess", "sgld")
AUTO_SGD_STEPS = 1000  # epochs="auto": the SGD trajectory runs at least this many optimizer steps (and 20 epochs)


class Subspace:
    """``w(z) = ŵ + Pᵀ z`` over a model's trainable weights (other weights are fixed at their mean).

    Attributes:
        mean: ``[D]`` ŵ, the flattened trainable weights' mean.
        directions: ``[rank, D]`` P, orthonormal rows.
        fixed: the full ``get_weights()`` list at ŵ (non-trainable weights included).
        trainable: indices into ``get_weights()`` of the trainable weights, in flattening order.
        explained: for ``"pca"``, the fraction of the iterates' variance each direction explains.
    """

    def __init__(self, mean, directions, fixed, trainable, explained=None):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.directions = np.asarray(directions, dtype=np.float64)
        self.fixed = [np.asarray(w) for w in fixed]
        self.trainable = list(trainable)
        self.explained = None if explained is None else [float(e) for e in explained]

    @property
    def rank(self) -> int:
        return self.directions.shape[0]

    def weights(self, z) -> list:
        """The full weight list at ``z``."""
        flat = self.mean + self.directions.T @ np.asarray(z, dtype=np.float64)
        out, start = list(self.fixed), 0
        for i in self.trainable:
            size = self.fixed[i].size
            out[i] = flat[start:start + size].reshape(self.fixed[i].shape).astype(np.float32)
            start += size
        return out

    def prior_mean(self) -> np.ndarray:
        """``-P ŵ``: the centre of the weight prior restricted to the subspace."""
        return -self.directions @ self.mean


def make_subspace(iterates, trainable, kind="pca", rank=5, seed=0) -> Subspace:
    """Build a :class:`Subspace` from ``iterates`` (weight lists) of one architecture."""
    flat = np.stack([np.concatenate([ws[i].ravel() for i in trainable]).astype(np.float64) for ws in iterates])
    mean = flat.mean(axis=0)
    fixed = [np.mean([ws[i] for ws in iterates], axis=0).astype(np.float32) for i in range(len(iterates[0]))]
    explained = None
    if kind == "pca":
        _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
        directions = vt[:rank]
        explained = (s[:rank] ** 2 / max(float(np.sum(s ** 2)), 1e-300)).tolist()
    else:
        g = np.random.default_rng(seed).normal(size=(flat.shape[1], rank))
        directions = np.linalg.qr(g)[0].T
    return Subspace(mean, directions, fixed, trainable, explained)


def elliptical_slice_chain(log_likelihood, f0, prior_std: float, num_steps: int, seed: int = 0,
                           chunk: int = 100, max_shrinks: int = 200, callback=None):
    """Elliptical slice sampling (Murray, Adams & MacKay 2010, Fig. 2) as one TF graph per chunk.

    Samples ``p(f) ∝ L(f) N(f; 0, prior_std² I)``. Each update draws ``ν ~ N(0, prior_std² I)``
    and a level ``log L(f) + log u``, then proposes ``f cos θ + ν sin θ`` on the ellipse through
    ``f`` and ``ν``, shrinking the angle bracket towards 0 until the proposal is above the level.

    Args:
        log_likelihood: TF function ``f [r] float64 -> log L(f)`` (a float64 scalar).
        f0: the starting state ``[r]``.
        prior_std: the std of the zero-mean isotropic Gaussian prior.
        num_steps: updates to run; every state is returned.
        seed: stateless seed (same seed, same chain).
        chunk: updates per graph call (``callback(done, f)`` runs after each).

    Returns:
        ``(states [num_steps, r] numpy float64, evaluations of log_likelihood)``.

    Example:
        >>> ll = lambda f: -0.5 * tf.reduce_sum(tf.square(f - 1.0)) / 0.1 ** 2
        >>> states, _ = elliptical_slice_chain(ll, np.zeros(2), 1.0, 500)
        >>> bool(abs(states[100:].mean() - 0.99) < 0.05)
        True
    """
    key0 = tf.constant([int(seed), 11], tf.int64)
    scale = tf.constant(float(prior_std), tf.float64)
    two_pi = tf.constant(2.0 * math.pi, tf.float64)

    @tf.function
    def run(f, cur, start, n):
        def update(i, f, cur, evals, states):
            keys = tf.random.experimental.stateless_split(
                tf.random.experimental.stateless_fold_in(key0, tf.cast(start + i, tf.int64)), 4)
            nu = scale * tf.random.stateless_normal(tf.shape(f), seed=keys[0], dtype=tf.float64)
            level = cur + tf.math.log(tf.random.stateless_uniform([], seed=keys[1], dtype=tf.float64))
            theta = tf.random.stateless_uniform([], seed=keys[2], minval=0.0, maxval=two_pi, dtype=tf.float64)
            prop = f * tf.cos(theta) + nu * tf.sin(theta)
            val = log_likelihood(prop)

            def shrink(j, theta, lo, hi, prop, val):
                lo = tf.where(theta < 0, theta, lo)
                hi = tf.where(theta < 0, hi, theta)
                key = tf.random.experimental.stateless_fold_in(keys[3], tf.cast(j, tf.int64))
                theta = tf.random.stateless_uniform([], seed=key, minval=lo, maxval=hi, dtype=tf.float64)
                prop = f * tf.cos(theta) + nu * tf.sin(theta)
                return j + 1, theta, lo, hi, prop, log_likelihood(prop)

            j, _, _, _, prop, val = tf.while_loop(
                lambda j, theta, lo, hi, prop, val: tf.logical_and(tf.logical_not(val > level), j < max_shrinks),
                shrink, (tf.constant(1), theta, theta - two_pi, theta, prop, val))
            ok = val > level
            f = tf.where(ok, prop, f)
            cur = tf.where(ok, val, cur)
            return i + 1, f, cur, evals + j, states.write(i, f)

        states = tf.TensorArray(tf.float64, size=n)
        _, f, cur, evals, states = tf.while_loop(lambda i, *_: i < n, update,
                                                 (tf.constant(0), f, cur, tf.constant(0), states))
        return states.stack(), f, cur, evals

    f = tf.constant(np.asarray(f0, dtype=np.float64))
    cur = log_likelihood(f)
    out, evals, done = [], 1, 0
    while done < num_steps:
        n = min(chunk, num_steps - done)
        states, f, cur, e = run(f, cur, tf.constant(done), tf.constant(n))
        out.append(states.numpy())
        evals += int(e)
        done += n
        if callback is not None:
            callback(done, f.numpy())
    return np.concatenate(out, axis=0), evals


def _loglik_graph(model, sub, x, y, likelihood, noise_std, batch=4096):
    """TF function ``z [rank] float64 -> Σ_i log p(y_i | x_i, w(z))`` (float64) over the full data."""
    tvars = [model.weights[i] for i in sub.trainable]
    mean = tf.constant(sub.mean, tf.float64)
    dirs = tf.constant(sub.directions, tf.float64)
    sizes = [int(np.prod(v.shape)) for v in tvars]
    chunks = [(tf.constant(x[i:i + batch]), tf.constant(y[i:i + batch])) for i in range(0, len(x), batch)]
    const = -0.5 * math.log(2 * math.pi) - math.log(noise_std)

    def fn(z):
        flat = mean + tf.linalg.matvec(dirs, z, transpose_a=True)
        for v, part in zip(tvars, tf.split(flat, sizes)):
            v.assign(tf.cast(tf.reshape(part, v.shape), v.dtype))
        total = tf.constant(0.0, tf.float64)
        for xb, yb in chunks:
            out = tf.cast(model(xb, training=False), tf.float64)
            if likelihood == "regression":
                yb = tf.reshape(tf.cast(yb, tf.float64), tf.shape(out))
                ll = -0.5 * tf.square(yb - out) / noise_std ** 2 + const
            else:
                ll = -tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(yb, tf.int64), out)
            total += tf.reduce_sum(ll)
        return total

    return fn


def _sample_ess(model, sub, x, y, opts, num_samples, burn_in, thinning, seed, verbose):
    loglik = _loglik_graph(model, sub, x, y, opts["likelihood"], opts["noise_std"])
    temp = opts["temperature"]
    m = tf.constant(sub.prior_mean(), tf.float64)

    def tempered(f):  # the prior is tempered through its std below
        return loglik(m + f) / temp

    total = burn_in + thinning * num_samples
    bar = _bar(total, "subspace ess", verbose)

    def progress(done, _):
        if bar is not None:
            bar.update(done - bar.n)
            bar.set_postfix_str(f"samples {max(0, (done - burn_in) // thinning)}/{num_samples}", refresh=False)

    states, evals = elliptical_slice_chain(tempered, -sub.prior_mean(), opts["prior_std"] * math.sqrt(temp), total,
                                           seed, callback=progress)
    if bar is not None:
        bar.close()
    kept = states[burn_in + thinning - 1::thinning][:num_samples]
    return [sub.prior_mean() + f for f in kept], evals


def _sample_sgld(model, sub, x, y, cfg, opts, num_samples, burn_in, thinning, seed, verbose):
    from tflbayes.methods.sampling.likelihoods import keras_loss

    tvars = [model.weights[i] for i in sub.trainable]
    mean = tf.constant(sub.mean, tf.float32)
    dirs = tf.constant(sub.directions, tf.float32)
    sizes = [int(np.prod(v.shape)) for v in tvars]
    loss_fn = keras_loss(opts["likelihood"], opts["noise_std"], reduction="none")
    n, lr, temp = len(x), opts["step_size"], opts["temperature"]
    m = tf.constant(sub.prior_mean(), tf.float32)
    prec = 1.0 / (n * opts["prior_std"] ** 2)

    @tf.function
    def step(z, xb, yb, t):
        flat = mean + tf.linalg.matvec(dirs, z, transpose_a=True)
        for v, part in zip(tvars, tf.split(flat, sizes)):
            v.assign(tf.reshape(part, v.shape))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(yb, model(xb, training=True))) + tf.add_n([0.0] + model.losses)
        grads = tape.gradient(loss, tvars)
        g = tf.concat([tf.reshape(gr if gr is not None else tf.zeros_like(v), [-1]) for gr, v in zip(grads, tvars)], 0)
        drift = tf.linalg.matvec(dirs, g) + prec * (z - m)
        key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 7], tf.int64), t)
        noise = tf.random.stateless_normal(tf.shape(z), seed=key) * math.sqrt(2.0 * lr * temp / n)
        return z - lr * drift + noise, loss

    from tflbayes.methods.sampling._chain import dataset

    data, _ = dataset(x, y, cfg.batch_size, seed)
    total = burn_in + thinning * num_samples
    bar = _bar(total, "subspace sgld", verbose)
    z = tf.zeros([sub.rank], tf.float32)
    zs = []
    for t, (xb, yb) in enumerate(data.take(total), start=1):
        z, loss = step(z, xb, yb, tf.constant(t, tf.int64))
        if not np.isfinite(float(loss)) or not np.all(np.isfinite(z.numpy())):
            if bar is not None:
                bar.close()
            return zs, {"step": t}
        if t > burn_in and (t - burn_in) % thinning == 0:
            zs.append(z.numpy().astype(np.float64))
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"samples {len(zs)}/{num_samples}", refresh=False)
    if bar is not None:
        bar.close()
    return zs, None


def _bar(total, desc, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")


@register_method(
    "subspace",
    defaults={"num_samples": 10, "subspace": "pca", "rank": 5, "iterates": 20, "pretrain": 0.5, "step_size": 0.05,
              "momentum": 0.9, "sampler": "ess", "burn_in": None, "thinning": None, "prior_std": 1.0,
              "temperature": 1.0, "likelihood": "classification", "noise_std": 1.0, "steps_per_execution": 1},
    summary="subspace inference: MCMC in a low-dimensional (PCA or random) subspace of the SGD trajectory",
    sampling=True,
)
def train_subspace(build_model, x, y, cfg, num_samples=10, subspace="pca", rank=5, iterates=20, pretrain=0.5,
                   step_size=0.05, momentum=0.9, sampler="ess", burn_in=None, thinning=None, prior_std=1.0,
                   temperature=1.0, likelihood="classification", noise_std=1.0, steps_per_execution=1):
    """Subspace inference (Izmailov et al. 2019): see the module docstring for the maths.

    Options:
        num_samples: S, posterior samples (default 10).
        subspace: ``"pca"`` (default: principal directions of the SGD iterates) or ``"random"``.
        rank: the subspace's dimension (default 5; ``"pca"``: at most ``iterates - 1``).
        iterates: SGD snapshots collected after pre-training (default 20).
        pretrain: fraction of the epochs before the first snapshot (default 0.5).
        step_size: SGD learning rate of the trajectory, and the z-space SGLD step size (default 0.05).
        momentum: SGD heavy-ball momentum (default 0.9).
        sampler: ``"ess"`` (default, elliptical slice sampling, full-data likelihood) or ``"sgld"``.
        burn_in: sampler iterations discarded first (default: ess 100; sgld 5 epochs of mini-batches).
        thinning: sampler iterations between samples (default: ess 10; sgld one epoch of mini-batches).
        prior_std, temperature, likelihood, noise_std, steps_per_execution: as for ``sgld``. At
            T = 1 the subspace posterior of a network is very concentrated (digits: 0.002 nats of
            epistemic uncertainty on test digits); Izmailov et al. temper it, T > 1 (T = 30 on
            digits: 0.03 nats, NLL unchanged).

    Example:
        >>> post = tb.fit(build, ds, method="subspace", epochs=40, rank=5)  # doctest: +SKIP
    """
    opts = _options.check_common(step_size=step_size, num_samples=num_samples, y=y, prior_std=prior_std,
                                 temperature=temperature, likelihood=likelihood, noise_std=noise_std,
                                 steps_per_execution=steps_per_execution)
    check_choice("subspace", subspace, SUBSPACES)
    check_choice("sampler", sampler, SUBSPACE_SAMPLERS)
    iterates = check_positive_int("iterates", iterates, minimum=2)
    rank = check_positive_int("rank", rank)
    pre = _options.check_fraction("pretrain", pretrain)
    momentum = _options.check_fraction("momentum", momentum)
    auto = is_auto(cfg.epochs)
    if auto:  # the SGD trajectory: at least 20 epochs and AUTO_SGD_STEPS optimizer steps
        per_epoch = int(math.ceil(len(x) / cfg.batch_size))
        cfg = dataclasses.replace(cfg, epochs=max(20, _options.epochs_for(AUTO_SGD_STEPS, per_epoch)))
    total, per_epoch = _options.total_steps(len(x), cfg)
    if subspace == "pca" and rank > iterates - 1:
        raise InvalidInputError(
            f"Invalid value received for argument `rank`. A PCA subspace of {iterates} iterates has at most "
            f"{iterates - 1} directions (raise `iterates`). Received: rank={rank!r}"
        )
    start = int(round(pre * cfg.epochs)) * per_epoch
    gap = (total - start) // iterates
    if gap < 1:
        raise InvalidInputError(
            f"Invalid value received for argument `iterates`. {iterates} snapshots do not fit in the "
            f"{total - start} steps after pre-training: increase `epochs` or lower `iterates` / `pretrain`. "
            f"Received: iterates={iterates!r}"
        )
    if sampler == "ess":
        burn = 100 if burn_in is None else burn_in
        thin = 10 if thinning is None else thinning
    else:
        burn = 5 * per_epoch if burn_in is None else burn_in
        thin = per_epoch if thinning is None else thinning
    if isinstance(burn, bool) or not isinstance(burn, (int, np.integer)) or burn < 0:
        raise InvalidInputError(
            f"Invalid value received for argument `burn_in`. Expected an integer >= 0 (sampler iterations). "
            f"Received: burn_in={burn_in!r}"
        )
    thin = check_positive_int("thinning", thin)
    seed = 0 if cfg.seed is None else int(cfg.seed)

    def optimizer():
        return SGHMC(opts["step_size"], data_size=len(x), prior_std=opts["prior_std"], temperature=0.0,
                     friction=1.0 - momentum, seed=seed)

    model = build_compiled(build_model, x, cfg, optimizer, opts["likelihood"], opts["noise_std"],
                           opts["steps_per_execution"])
    options = {**opts, "subspace": subspace, "rank": rank, "iterates": iterates, "pretrain": pre,
               "momentum": momentum, "sampler": sampler, "burn_in": int(burn), "thinning": thin}
    if auto:
        options.update(epochs="auto", steps_run=int(total), epochs_run=int(cfg.epochs))
    col = run_chain(model, x, y, cfg, collection_steps(iterates, start, gap), total, "subspace", options,
                    description="subspace sgd", what="iterates")
    trainable_ids = {id(v) for v in model.trainable_weights}
    trainable = [i for i, v in enumerate(model.weights) if id(v) in trainable_ids]
    dim = sum(col.samples[0][i].size for i in trainable)
    if rank > dim:
        raise InvalidInputError(
            f"Invalid value received for argument `rank`. The model has {dim} trainable weights. Received: rank={rank!r}"
        )
    sub = make_subspace(col.samples, trainable, subspace, rank, seed)
    if sub.explained is not None:
        options["explained_variance"] = sub.explained
    # The low-dimensional sampling runs on one device: a plain copy of the model, outside the strategy.
    plain = model if cfg.strategy is None else training.build(build_model, x.shape[1:])
    plain.set_weights(sub.fixed)
    if sampler == "ess":
        zs, evals = _sample_ess(plain, sub, x, y, opts, opts["num_samples"], burn, thin, seed, cfg.verbose)
        options["likelihood_evaluations"] = int(evals)
        failed = None
    else:
        zs, failed = _sample_sgld(plain, sub, x, y, cfg, opts, opts["num_samples"], burn, thin, seed, cfg.verbose)
    samples = [sub.weights(z) for z in zs]
    if failed is not None:
        kept = posterior_of(model, samples, "subspace", options, cfg) if samples else []
        raise DivergenceError(
            f"subspace: the z-space SGLD chain diverged at step {failed['step']} (the loss or z became NaN/inf). "
            f"Run again with a smaller step size (step_size={opts['step_size']:g} now; try {opts['step_size'] / 10:g}). "
            f"The {len(samples)} samples collected before are kept in `error.samples`.",
            samples=kept,
        )
    options["chains"] = [len(samples)]
    return posterior_of(model, samples, "subspace", options, cfg)

