"""The SG-MCMC methods of :func:`tflbayes.fit`: ``sgld``, ``sghmc``, ``csgmcmc`` and ``snapshot``.

Each trains the user's model with ``model.fit`` (the user's callbacks run alongside) and a
sampler from :mod:`~tflbayes.methods.sampling.optimizers`; a
:class:`~tflbayes.methods.sampling.SampleCollector` copies the weights at the scheduled steps
into an :class:`~tflbayes.posterior.EnsemblePosterior`. The budget is the usual
``epochs × ceil(N / batch_size)`` optimizer steps; ``burn_in`` and ``thinning`` count optimizer steps.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tflbayes._checks import check_choice, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods.budget import is_auto
from tflbayes.methods.ensemble import resolve_num_samples
from tflbayes.methods.registry import register_method
from tflbayes.methods.sampling import _options
from tflbayes.methods.sampling._chain import build_compiled, check_mixing, posterior_of, run_chain
from tflbayes.methods.sampling.collect import collection_steps
from tflbayes.methods.sampling.optimizers import SGHMC, SGLD
from tflbayes.methods.sampling.schedules import CyclicalCosine, PolynomialStepSize, SamplingPhase

__all__ = ["train_sgld", "train_sghmc", "train_csgmcmc", "train_snapshot", "SCHEDULES", "SAMPLERS"]

SCHEDULES = ("constant", "polynomial")
SAMPLERS = ("sgld", "sghmc")

_COMMON = {"prior_std": 1.0, "temperature": 1.0, "likelihood": "classification", "noise_std": 1.0,
           "steps_per_execution": 1}


def _seed(cfg):
    return 0 if cfg.seed is None else int(cfg.seed)


def _with_epochs(cfg, epochs):
    """The config with ``epochs`` resolved from ``"auto"`` (and the chain's record in ``cfg.runs``)."""
    return dataclasses.replace(cfg, epochs=int(epochs))


def _schedule(schedule, step_size, total):
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "polynomial":
        return PolynomialStepSize(step_size, decay_steps=max(1, total // 10), power=0.55)
    return step_size


def _markov_chain(name, optimizer_cls, build_model, x, y, cfg, common, *, num_samples, burn_in, thinning, step_size,
                  schedule, **optimizer_options):
    """sgld / sghmc: one chain, samples every ``thinning`` steps after ``burn_in``."""
    opts = _options.check_common(step_size=step_size, num_samples=num_samples, y=y, **common)
    auto = is_auto(cfg.epochs)
    if auto:  # the chain length follows num_samples
        per_epoch = _options.total_steps(len(x), _with_epochs(cfg, 1))[1]
        burn, thin, epochs = _options.auto_chain(opts["num_samples"], per_epoch, burn_in, thinning)
        cfg = _with_epochs(cfg, epochs)
    total, per_epoch = _options.total_steps(len(x), cfg)
    if not auto:
        burn = _options.check_burn_in(burn_in, total, per_epoch, cfg)
        thin = _options.check_thinning(thinning, opts["num_samples"], burn, total, per_epoch, cfg)
    lr = _schedule(schedule, opts["step_size"], total)

    def optimizer():
        return optimizer_cls(lr, data_size=len(x), prior_std=opts["prior_std"], temperature=opts["temperature"],
                             seed=_seed(cfg), **optimizer_options)

    model = build_compiled(build_model, x, cfg, optimizer, opts["likelihood"], opts["noise_std"],
                           opts["steps_per_execution"])
    options = {**opts, "burn_in": burn, "thinning": thin, "schedule": schedule, **optimizer_options}
    if auto:
        options["epochs"] = "auto"
    col = run_chain(model, x, y, cfg, collection_steps(opts["num_samples"], burn, thin), total, name, options)
    options["chains"] = [len(col.samples)]
    post = posterior_of(model, col.samples, name, options, cfg)
    if auto:
        post.options.update(steps_run=int(total), epochs_run=int(cfg.epochs))
    check_mixing(post, x, y, cfg, name, burn_in=burn, thinning=thin, per_epoch=per_epoch)
    return post


@register_method(
    "sgld",
    defaults={"num_samples": 10, "burn_in": None, "thinning": None, "step_size": 0.05, "schedule": "constant",
              **_COMMON},
    summary="stochastic gradient Langevin dynamics: SGD plus Gaussian noise samples the posterior",
    sampling=True,
)
def train_sgld(build_model, x, y, cfg, num_samples=10, burn_in=None, thinning=None, step_size=0.05,
               schedule="constant", prior_std=1.0, temperature=1.0, likelihood="classification", noise_std=1.0,
               steps_per_execution=1):
    """Stochastic gradient Langevin dynamics (Welling & Teh 2011).

    Targets ``p(θ|D)^(1/T) ∝ exp(-U(θ)/T)``, ``U(θ) = -Σ_{i≤N} log p(y_i|x_i,θ) + ||θ||²/(2 prior_std²)``
    with the update (``g``: gradient of the mini-batch *mean* loss, ``α``: ``step_size``)

        θ ← θ - α (g + θ / (N prior_std²)) + sqrt(2 α T / N) ξ,    ξ ~ N(0, I),

    i.e. the Langevin step ``ε = α / N`` on the mini-batch estimate of ``U`` (see :class:`SGLD`).

    Options:
        num_samples: S, posterior samples kept (default 10).
        burn_in: optimizer steps discarded first (default: with ``epochs="auto"``, the default of
            ``tb.fit``, ``max(1000, thinning × num_samples / 4)``; with integer epochs half of
            ``epochs × ceil(N / batch_size)``).
        thinning: steps between samples (default: with ``epochs="auto"`` ``max(50, steps per epoch)``,
            and the chain runs ``burn_in + thinning × num_samples`` steps; with integer epochs S spread
            evenly over the steps after burn-in).

    At the end the chain's effective sample size (ESS of the predictive log-likelihood trace, one
    chain) is recorded in ``options["ess"]``, with a warning saying how long to run the chain when it
    is below a quarter of ``num_samples``.
        step_size: ``α``, a learning rate on the mean loss (default 0.05; divergence → lower it).
        schedule: ``"constant"`` (default) or ``"polynomial"``: ``α_t = α (1 + 10 t / steps)^-0.55``.
        prior_std: std of the Gaussian prior on every trainable weight (default 1.0).
        temperature: T (default 1.0, the true posterior; < 1 a cold posterior, spread ∝ sqrt(T)).
        likelihood: ``"classification"`` (softmax of the logits, default) or ``"regression"``
            (Gaussian with known ``noise_std``; float targets, the model outputs the mean).
        noise_std: the regression noise std (default 1.0; ignored for classification).
        steps_per_execution: Keras's option; > 1 is faster for tiny models (callbacks, samples and
            NaN checks then happen every that many steps).

    Example:
        >>> post = tb.fit(build, ds, method="sgld", epochs=40, num_samples=10)  # doctest: +SKIP
    """
    common = dict(prior_std=prior_std, temperature=temperature, likelihood=likelihood, noise_std=noise_std,
                  steps_per_execution=steps_per_execution)
    return _markov_chain("sgld", SGLD, build_model, x, y, cfg, common, num_samples=num_samples, burn_in=burn_in,
                         thinning=thinning, step_size=step_size, schedule=schedule)


@register_method(
    "sghmc",
    defaults={"num_samples": 10, "burn_in": None, "thinning": None, "step_size": 0.01, "friction": 0.1,
              "schedule": "constant", **_COMMON},
    summary="stochastic gradient Hamiltonian Monte Carlo: momentum SGD with friction and noise",
    sampling=True,
)
def train_sghmc(build_model, x, y, cfg, num_samples=10, burn_in=None, thinning=None, step_size=0.01, friction=0.1,
                schedule="constant", prior_std=1.0, temperature=1.0, likelihood="classification", noise_std=1.0,
                steps_per_execution=1):
    """Stochastic gradient Hamiltonian Monte Carlo with friction (Chen, Fox & Guestrin 2014).

    With ``η = α / N`` (``α``: ``step_size``) and friction ``a``, the discretised second-order
    Langevin dynamics (eq. 15 of the paper, ``β̂ = 0``) is

        v ← (1 - a) v - α (g + θ / (N prior_std²)) + sqrt(2 a α T / N) ξ,     θ ← θ + v,

    momentum SGD (momentum ``1 - a``) plus noise whose variance balances the friction, so that
    the stationary law is ``p(θ|D)^(1/T)``. It explores faster than SGLD for the same bias.

    Options:
        friction: ``a`` in (0, 1] (default 0.1: momentum 0.9).
        step_size: ``α`` (default 0.01; the effective SGLD-like step is ``α / a``).
        num_samples, burn_in, thinning, schedule, prior_std, temperature, likelihood, noise_std,
        steps_per_execution: as for ``sgld``.

    Example:
        >>> post = tb.fit(build, ds, method="sghmc", epochs=40, friction=0.1)  # doctest: +SKIP
    """
    if isinstance(friction, bool) or not isinstance(friction, (int, float)) or not 0 < friction <= 1:
        raise InvalidInputError(
            f"Invalid value received for argument `friction`. Expected a number in (0, 1]. Received: friction={friction!r}"
        )
    common = dict(prior_std=prior_std, temperature=temperature, likelihood=likelihood, noise_std=noise_std,
                  steps_per_execution=steps_per_execution)
    return _markov_chain("sghmc", SGHMC, build_model, x, y, cfg, common, num_samples=num_samples, burn_in=burn_in,
                         thinning=thinning, step_size=step_size, schedule=schedule, friction=float(friction))


def cyclical_steps(num_samples, cycles, cycle_length, first_sampling, thinning=None) -> tuple:
    """Collection steps of cyclical SG-MCMC: the last ``m_c`` steps of each cycle's sampling phase,
    ``thinning`` apart, ending at the cycle's end (where the step size is smallest)."""
    per_cycle = [len(a) for a in np.array_split(np.arange(num_samples), cycles)]
    phase = cycle_length - first_sampling
    m = max(per_cycle)
    if thinning is None:
        thinning = max(1, phase // max(m, 1))
    if m and thinning * (m - 1) + 1 > phase:
        raise InvalidInputError(
            f"Invalid value received for argument `num_samples`. {m} samples per cycle, {thinning} steps apart, do "
            f"not fit in a sampling phase of {phase} steps (cycle length {cycle_length}); increase `epochs` or lower "
            f"`num_samples`, `thinning` or `exploration`. Received: num_samples={num_samples!r}"
        )
    steps = [c * cycle_length + cycle_length - thinning * j for c, k in enumerate(per_cycle) for j in reversed(range(k))]
    return steps, int(thinning)


@register_method(
    "csgmcmc",
    defaults={"num_samples": 10, "cycles": 5, "exploration": 0.8, "sampler": "sghmc", "step_size": 0.1,
              "friction": 0.1, "thinning": None, **_COMMON},
    summary="cyclical SG-MCMC: cosine step-size cycles, explore with SGD then sample with SGLD/SGHMC",
    sampling=True,
)
def train_csgmcmc(build_model, x, y, cfg, num_samples=10, cycles=5, exploration=0.8, sampler="sghmc", step_size=0.1,
                  friction=0.1, thinning=None, prior_std=1.0, temperature=1.0, likelihood="classification",
                  noise_std=1.0, steps_per_execution=1):
    """Cyclical stochastic gradient MCMC (Zhang, Li, Zhang, Chen & Wilson 2020, ICLR).

    The run is split into ``cycles`` cycles of ``L`` steps with the cosine step size
    ``α_t = α_0/2 (cos(π mod(t, L)/L) + 1)`` (eq. 1). The first ``exploration`` fraction of each
    cycle (large steps) is plain (momentum) SGD on ``U``, which moves to a new mode; the rest is
    the sampling phase: the same update plus the SGLD / SGHMC noise (see ``sgld`` / ``sghmc``),
    with samples taken at its end, where the steps are small. Samples therefore cover several
    modes, unlike one SGLD chain. Within a mode, each cycle's sampling phase starts from where
    the exploration stopped (near the mode) and must be long enough to forget it: on small
    problems give it more of the cycle (``exploration=0.5``) or longer cycles, else the samples
    lean towards the mode. The SGLD sampler needs ~``1 / friction`` times the SGHMC step size for
    the same progress per step.

    Options:
        num_samples: S in total, split evenly over the cycles (default 10).
        cycles: number of cycles (default 5).
        exploration: fraction of each cycle without noise (default 0.8, Zhang et al.'s β).
        sampler: ``"sghmc"`` (default; friction ``friction``) or ``"sgld"``.
        step_size: ``α_0``, the step size at the start of each cycle (default 0.1).
        friction: SGHMC friction (default 0.1).
        thinning: steps between samples within a cycle (default: spread over the sampling phase).
        prior_std, temperature, likelihood, noise_std, steps_per_execution: as for ``sgld``.

    Example:
        >>> post = tb.fit(build, ds, method="csgmcmc", epochs=50, cycles=5, num_samples=10)  # doctest: +SKIP
    """
    check_choice("sampler", sampler, SAMPLERS)
    opts = _options.check_common(step_size=step_size, num_samples=num_samples, y=y, prior_std=prior_std,
                                 temperature=temperature, likelihood=likelihood, noise_std=noise_std,
                                 steps_per_execution=steps_per_execution)
    cycles = check_positive_int("cycles", cycles)
    explore = _options.check_fraction("exploration", exploration)
    if sampler == "sghmc" and (isinstance(friction, bool) or not isinstance(friction, (int, float))
                               or not 0 < friction <= 1):
        raise InvalidInputError(
            f"Invalid value received for argument `friction`. Expected a number in (0, 1]. Received: friction={friction!r}"
        )
    if thinning is not None:
        thinning = check_positive_int("thinning", thinning)
    if opts["num_samples"] < cycles:
        raise InvalidInputError(
            f"Invalid value received for argument `num_samples`. Expected at least one sample per cycle "
            f"(>= cycles={cycles}). Received: num_samples={num_samples!r}"
        )
    auto = is_auto(cfg.epochs)
    if auto:  # cycles long enough for their samples
        per_epoch = _options.total_steps(len(x), _with_epochs(cfg, 1))[1]
        per_cycle = -(-opts["num_samples"] // cycles)
        length = _options.auto_cycle_length(per_epoch, per_cycle, explore, thinning)
        cfg = _with_epochs(cfg, _options.epochs_for(cycles * length, per_epoch))
    total, per_epoch = _options.total_steps(len(x), cfg)
    works = None if auto else _cyclical_epochs_that_work(opts["num_samples"], cycles, explore, thinning, per_epoch,
                                                          cfg.epochs)
    if cycles > total:
        raise InvalidInputError(
            f"Invalid value received for argument `cycles`. Expected at most the {total} optimizer steps of the run "
            f"(epochs × ceil(N / batch_size) = {cfg.epochs} × {per_epoch}); epochs >= {works} would work. "
            f"Received: cycles={cycles!r}"
        )
    length = total // cycles
    gate = SamplingPhase(length, explore)
    try:
        steps, thin = cyclical_steps(opts["num_samples"], cycles, length, gate.first_sampling_step(), thinning)
    except InvalidInputError as err:
        raise InvalidInputError(f"{err} With epochs={cfg.epochs} ({per_epoch} steps each): epochs >= {works} "
                                "would work.") from None
    lr = CyclicalCosine(opts["step_size"], length)
    seed = _seed(cfg)

    def optimizer():
        common = dict(data_size=len(x), prior_std=opts["prior_std"], temperature=opts["temperature"],
                      noise_schedule=gate, seed=seed)
        return SGHMC(lr, friction=float(friction), **common) if sampler == "sghmc" else SGLD(lr, **common)

    model = build_compiled(build_model, x, cfg, optimizer, opts["likelihood"], opts["noise_std"],
                           opts["steps_per_execution"])
    options = {**opts, "cycles": cycles, "exploration": explore, "sampler": sampler, "thinning": thin,
               "cycle_length": length}
    if sampler == "sghmc":
        options["friction"] = float(friction)
    if auto:
        options.update(epochs="auto", steps_run=int(total), epochs_run=int(cfg.epochs))
    col = run_chain(model, x, y, cfg, steps, total, "csgmcmc", options)
    options["chains"] = [len(col.samples)]
    return posterior_of(model, col.samples, "csgmcmc", options, cfg)


def _cyclical_epochs_that_work(num_samples, cycles, exploration, thinning, per_epoch, epochs, limit=10 ** 7):
    """The fewest epochs (>= 1) whose cycles hold ``num_samples`` samples (None: none below ``limit`` steps)."""
    def ok(e):
        total = e * per_epoch
        if cycles > total:
            return False
        length = total // cycles
        try:
            cyclical_steps(num_samples, cycles, length, SamplingPhase(length, exploration).first_sampling_step(),
                           thinning)
        except InvalidInputError:
            return False
        return True

    hi = max(1, int(epochs))
    while not ok(hi):
        hi *= 2
        if hi * per_epoch > limit:
            return None
    lo = 0  # ok(lo) is False or lo == 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


@register_method(
    "snapshot",
    defaults={"num_samples": None, "cycles": None, "step_size": 0.1, "momentum": 0.9, "prior_std": 1.0,
              "likelihood": "classification", "noise_std": 1.0, "steps_per_execution": 1},
    summary="snapshot ensemble: cyclic cosine learning rate, one member at the end of each cycle",
)
def train_snapshot(build_model, x, y, cfg, num_samples=None, cycles=None, step_size=0.1, momentum=0.9, prior_std=1.0,
                   likelihood="classification", noise_std=1.0, steps_per_execution=1):
    """Snapshot ensembles (Huang, Li, Pleiss, Liu, Hopcroft & Weinberger 2017, "Train 1, get M for free").

    One SGD run (heavy-ball ``momentum``) on the MAP objective ``U(θ)`` (mean loss plus the
    Gaussian prior as weight decay ``1 / (N prior_std²)``) with the cyclic cosine learning rate
    ``α_t = α_0/2 (cos(π mod(t, L)/L) + 1)`` (eq. 2); at the end of each of the ``cycles``
    cycles the model sits in a local minimum and its weights become one ensemble member. The
    restart to ``α_0`` kicks it towards another one. Not a sampler (no noise): an ensemble.

    Options:
        num_samples: M, the number of members (default 5), one per cycle.
        cycles: the same as ``num_samples`` (its older name); give one of the two.
        step_size: ``α_0``, the learning rate at each restart (default 0.1).
        momentum: heavy-ball momentum in [0, 1) (default 0.9).
        prior_std: the Gaussian prior as weight decay (default 1.0).
        likelihood, noise_std, steps_per_execution: as for ``sgld``.

    Example:
        >>> post = tb.fit(build, ds, method="snapshot", epochs=50, cycles=5)  # doctest: +SKIP
    """
    opts = _options.check_common(step_size=step_size, y=y, prior_std=prior_std, temperature=1.0,
                                 likelihood=likelihood, noise_std=noise_std, steps_per_execution=steps_per_execution)
    opts.pop("temperature")
    cycles = resolve_num_samples(num_samples, cycles, "cycles", 5)
    momentum = _options.check_fraction("momentum", momentum)
    auto = is_auto(cfg.epochs)
    if auto:
        per_epoch = _options.total_steps(len(x), _with_epochs(cfg, 1))[1]
        cfg = _with_epochs(cfg, _options.epochs_for(cycles * _options.auto_cycle_length(per_epoch), per_epoch))
    total, per_epoch = _options.total_steps(len(x), cfg)
    if cycles > total:
        raise InvalidInputError(
            f"Invalid value received for argument `cycles`. Expected at most the {total} optimizer steps of the run "
            f"(epochs × ceil(N / batch_size) = {cfg.epochs} × {per_epoch}); epochs >= "
            f"{_options.epochs_for(cycles, per_epoch)} would work. Received: cycles={cycles!r}"
        )
    length = total // cycles
    lr = CyclicalCosine(opts["step_size"], length)

    def optimizer():
        return SGHMC(lr, data_size=len(x), prior_std=opts["prior_std"], temperature=0.0, friction=1.0 - momentum,
                     seed=_seed(cfg))

    model = build_compiled(build_model, x, cfg, optimizer, opts["likelihood"], opts["noise_std"],
                           opts["steps_per_execution"])
    options = {**opts, "cycles": cycles, "num_samples": cycles, "momentum": momentum, "cycle_length": length}
    if auto:
        options.update(epochs="auto", steps_run=int(total), epochs_run=int(cfg.epochs))
    steps = [length * (c + 1) for c in range(cycles)]
    col = run_chain(model, x, y, cfg, steps, total, "snapshot", options, what="members")
    return posterior_of(model, col.samples, "snapshot", options, cfg)

