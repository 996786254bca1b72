"""One ``model.fit`` run with a sampler and a :class:`SampleCollector`, ending in an EnsemblePosterior."""
from __future__ import annotations

import math
import warnings

import numpy as np

from tflbayes._keras import tf
from tflbayes.errors import DivergenceError, TflbayesError
from tflbayes.methods import training
from tflbayes.methods.sampling.collect import SampleCollector
from tflbayes.methods.sampling.likelihoods import keras_loss
from tflbayes.posterior import EnsemblePosterior

__all__ = ["build_compiled", "run_chain", "check_mixing", "MIXING_RATIO"]

#: ``check_mixing`` warns when the chain's ESS is below this fraction of its number of samples.
MIXING_RATIO = 0.25


def build_compiled(build_model, x, cfg, optimizer_fn, likelihood, noise_std, steps_per_execution=1):
    """Build the user's model under ``cfg.strategy`` and compile it with the sampler."""
    training.set_seed(cfg.seed)
    with training.scope(cfg.strategy):
        model = training.build(build_model, x.shape[1:])
        model.compile(optimizer=optimizer_fn(), loss=keras_loss(likelihood, noise_std),
                      metrics=["accuracy"] if likelihood == "classification" else None,
                      steps_per_execution=steps_per_execution)
    return model


def run_chain(model, x, y, cfg, steps, total, method, options, *, epochs=None, description=None, what="samples"):
    """``model.fit`` with the user's callbacks and a collector at ``steps``; returns the collector.

    Raises:
        DivergenceError: the loss (or the weights) became NaN/inf; ``.samples`` keeps what was
            collected before (an :class:`EnsemblePosterior`, or ``[]`` when nothing was).
    """
    collector = SampleCollector(steps, total, description=description or method, verbose=cfg.verbose)
    data, per_epoch = dataset(x, y, cfg.batch_size, cfg.seed)
    model.fit(data, epochs=cfg.epochs if epochs is None else epochs, steps_per_epoch=per_epoch,
              validation_data=cfg.validation_data, callbacks=[*cfg.callbacks, collector], verbose=0)
    if collector.diverged_at is not None:
        d = collector.diverged_at
        kept = posterior_of(model, collector.samples, method, options, cfg) if collector.samples else []
        step_size = options.get("step_size")
        hint = (f" with a smaller step size (step_size={step_size:g} now; try {step_size / 10:g})"
                if isinstance(step_size, float) else " with a smaller step size")
        raise DivergenceError(
            f"{method} diverged at optimizer step {d['step']} (epoch {d['epoch'] + 1}, batch {d['batch'] + 1}): "
            f"the loss or the weights became NaN/inf. Run again{hint}. "
            f"The {len(collector.samples)} {what} collected before are kept in `error.samples`.",
            samples=kept,
        )
    if not collector.samples:
        raise TflbayesError(
            f"{method}: training stopped (a callback set `stop_training`) at step {collector.step}, "
            f"before the first {what[:-1]} was due at step {collector.steps[0]}."
        )
    if not collector.done:
        warnings.warn(
            f"{method}: training stopped early; collected {len(collector.samples)} of {collector.num_samples} {what}.",
            stacklevel=3,
        )
    return collector


def dataset(x, y, batch_size, seed):
    """Reshuffled every epoch, batched (last batch partial, as ``model.fit(x, y)``) and repeated, so
    that one iterator serves the whole run: ``(dataset, steps_per_epoch)``."""
    n = len(x)
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        n, seed=None if seed is None else int(seed), reshuffle_each_iteration=True)
    return data.batch(batch_size).repeat().prefetch(2), int(math.ceil(n / batch_size))


def posterior_of(model, samples, method, options, cfg) -> EnsemblePosterior:
    model.set_weights(samples[-1])
    return EnsemblePosterior(model, samples, method, options, cfg.class_names)


def check_mixing(post, x, y, cfg, method, *, burn_in, thinning, per_epoch, max_rows=512):
    """Single-chain ESS of the predictive log-likelihood trace (:func:`~.convergence.ess_rhat`) on
    ``cfg.validation_data`` (else the first ``max_rows`` training rows), recorded in
    ``post.options["ess"]``; a warning when it is below ``MIXING_RATIO × num_samples``, saying how long
    to run the chain (the thinning that would give about ``num_samples`` effective samples)."""
    from tflbayes.methods.sampling.convergence import ess_rhat, log_likelihood_trace

    s = post.num_samples
    if s < 4:
        return None
    xs, ys = cfg.validation_data if cfg.validation_data is not None else (x, y)
    trace = log_likelihood_trace(post, xs[:max_rows], ys[:max_rows])
    if not np.all(np.isfinite(trace)) or np.ptp(trace) == 0:
        return None
    ess = ess_rhat(trace[None])["ess"]
    post.options["ess"] = round(float(ess), 1)
    if ess < MIXING_RATIO * s:
        thin = int(math.ceil(thinning * s / max(ess, 1.0)))
        steps = burn_in + thin * s
        warnings.warn(
            f"{method}: the chain has not mixed: its effective sample size is {ess:.1f} for {s} samples "
            f"(predictive log-likelihood trace; {burn_in} burn-in steps, thinning {thinning}). Run it about "
            f"{thin / thinning:.0f}x longer: thinning={thin} (burn_in + thinning x num_samples = {steps} optimizer "
            f"steps, epochs={int(math.ceil(steps / per_epoch))}), or lower `num_samples`.",
            stacklevel=3,
        )
    return ess
