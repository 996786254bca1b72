"""``tb.distill``: compress a posterior into one network (BDK, GPED, EnD²), or search for that network."""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from tflbayes._checks import check_choice, check_classification, check_inputs, check_options, check_positive_float, check_positive_int
from tflbayes.errors import InvalidInputError
from tflbayes.methods import training
from tflbayes.methods.budget import check_epochs, is_auto

# importing the recipes registers them
from tflbayes.distill import bdk as _bdk  # noqa: F401
from tflbayes.distill import end2 as _end2  # noqa: F401
from tflbayes.distill import gped as _gped  # noqa: F401
from tflbayes.distill.end2 import END2_LOSSES
from tflbayes.distill.check import agreement, agreement_warning
from tflbayes.distill.recipe import DISTILL_BUDGET, RECIPES, fit_student
from tflbayes.distill.students import build_student_model
from tflbayes.distill.transfer import auxiliary_inputs, teacher_samples, transfer_pool

__all__ = ["distill", "DISTILL_METHODS", "SEARCHES"]

#: The distillation methods :func:`distill` knows.
DISTILL_METHODS = ("bdk", "gped", "end2")
#: The student searches :func:`distill` knows.
SEARCHES = ("prune",)

_SEARCH_OPTIONS = {"finetune_epochs": None, "widths": None, "large_width": 2.0, "validation_data": None,
                   "x_ood": None, "plot": None, "latency_rounds": 200}


def _check_teacher(teacher, method, recipe):
    from tflbayes.posterior import Posterior

    if not isinstance(teacher, Posterior):
        raise InvalidInputError(
            "Invalid value received for argument `teacher`. Expected a tflbayes Posterior (from tb.fit or "
            f"tb.load). Received: {type(teacher).__name__}")
    if teacher.kind == "distilled":
        raise InvalidInputError(
            f"method={method!r} needs a teacher with posterior samples (an ensemble, stochastic or Dirichlet "
            f"posterior); the teacher is a distilled {teacher.method!r} student (DistilledPosterior), which "
            "only has its predictive distribution. Distill from the original posterior.")
    if teacher.num_samples < recipe.min_teacher_samples:
        raise InvalidInputError(
            f"method={method!r} distills the spread of the teacher's posterior samples and needs at least "
            f"{recipe.min_teacher_samples}; the teacher ({type(teacher).__name__}, {teacher.method!r}) has "
            f"{teacher.num_samples}. Use an ensemble with more members or method='bdk'.")


def _check_options(method, recipe_cls, options, search):
    valid = {**recipe_cls.defaults, **(_SEARCH_OPTIONS if search else {})}
    unknown = set(options) - set(valid)
    hint = "" if search else " (search options need search='prune')" if unknown & set(_SEARCH_OPTIONS) else ""
    check_options(options, valid, f"method {method!r}", hint)
    merged = {**recipe_cls.defaults, **{k: v for k, v in options.items() if k in recipe_cls.defaults}}
    if method == "end2":
        check_choice("loss", merged["loss"], END2_LOSSES)
        t = check_positive_float("temperature", merged["temperature"])
        if t < 1:
            raise InvalidInputError(
                f"Invalid value received for argument `temperature`. Expected a number >= 1 (annealed to 1). "
                f"Received: temperature={t}")
        a = merged["anneal"]
        if not isinstance(a, (int, float)) or isinstance(a, bool) or not 0 <= a <= 1:
            raise InvalidInputError(
                f"Invalid value received for argument `anneal`. Expected a fraction in [0, 1]. Received: anneal={a!r}")
        check_positive_float("prior", merged["prior"], allow_zero=True)
        check_positive_float("max_precision", merged["max_precision"])
        check_positive_float("teacher_smoothing", merged["teacher_smoothing"])
    if method == "gped":
        from tflbayes.distill.gped import check_expectations

        check_positive_float("entropy_weight", merged["entropy_weight"], allow_zero=True)
        merged["expectations"] = check_expectations(merged["expectations"])
    return merged


def _transfer(x_transfer, teacher):
    if x_transfer is None or (hasattr(x_transfer, "__len__") and len(x_transfer) == 0) or np.size(x_transfer) == 0:
        raise InvalidInputError(
            "Invalid value received for argument `x_transfer`: the transfer set is empty. Pass the inputs the "
            "student should learn on (e.g. the training inputs).")
    return check_inputs(x_transfer, teacher.input_shape, "x_transfer")


def _aux(x_aux, x, teacher, seed):
    if x_aux is None:
        return None, None
    if isinstance(x_aux, str):
        if x_aux != "auto":
            raise InvalidInputError(
                f"Invalid value received for argument `x_aux`. Expected None, 'auto' or an array of inputs. "
                f"Received: x_aux={x_aux!r}")
        return auxiliary_inputs(x, seed=seed), "auto"
    return check_inputs(x_aux, teacher.input_shape, "x_aux"), "given"


def distill(teacher, x_transfer, method: str = "end2", build_student=None, *, epochs="auto",
            batch_size: int = 64, learning_rate: float = 3e-3, x_aux="auto", augment: int = 2,
            noise_std: float = 0.05, shift: int = 0, num_samples: Optional[int] = None,
            search: Optional[str] = None, budgets=None, verbose: int = 0, seed: Optional[int] = 0, **options):
    """Distill a posterior into one network that runs at the cost of one forward pass.

    Methods (survey §4):

    - ``"bdk"``, Bayesian Dark Knowledge (Korattikara et al. 2015): the student matches the
      posterior predictive. Returns a :class:`~tflbayes.posterior.DistilledPosterior` whose
      ``predict`` gives probs and total uncertainty only (``aleatoric``/``epistemic`` are None:
      BDK has no epistemic uncertainty).
    - ``"gped"``, Generalized Posterior Expectation Distillation (Vadera et al. 2020): heads for
      the predictive and the expected entropy; total, aleatoric and epistemic = total - aleatoric.
      Returns a :class:`~tflbayes.posterior.DistilledPosterior`.
    - ``"end2"``, Ensemble Distribution Distillation (Malinin et al. 2020) with proxy-Dirichlet
      targets (Ryabinin et al. 2021; ``loss="nll"`` for the original criterion). Returns a
      :class:`~tflbayes.posterior.DirichletPosterior` (convert with ``mode="dirichlet"``).

    The transfer pool is ``x_transfer``, ``augment`` perturbed copies of it (Gaussian noise of
    ``noise_std`` x the data range, image shifts up to ``shift`` px) and the auxiliary inputs
    ``x_aux``; the teacher labels every input of it with its posterior samples.

    Args:
        teacher: a Posterior with samples (ensemble, stochastic, or Dirichlet).
        x_transfer: ``[N, *input_shape]`` inputs, usually the training inputs (labels not needed).
        method: ``"bdk"``, ``"gped"`` or ``"end2"``.
        build_student: zero-argument function returning a Keras model (or a model) with the
            teacher's input shape and ``C`` logits; default: the teacher's architecture with
            fresh weights and MCDropout/variational layers turned back into Dropout/Dense/Conv2D.
        epochs: ``"auto"`` (default): a budget in optimizer steps, 1,000 to 20,000, with early
            stopping on the recipe's loss on a held-out 15 % of the transfer inputs and of the
            auxiliary inputs (Adam at ``learning_rate``, best weights restored; what ran is recorded
            in the options: ``steps_run``, ``epochs_run``, ``stopped_by``); an integer: that many
            epochs over the whole pool with a cosine decay of the learning rate to 2 % of it
            (``search`` runs 30 epochs under "auto").
        batch_size, learning_rate: Keras training of the student.
        x_aux: ``"auto"`` (default: :func:`~tflbayes.distill.auxiliary_inputs` of ``x_transfer``,
            as many as ``x_transfer``), an array of extra inputs, or None.
        augment: perturbed copies of ``x_transfer`` added to the pool (BDK's input perturbation).
        noise_std, shift: the perturbation: Gaussian noise of ``noise_std`` x the data range (0.05)
            and image shifts of up to ``shift`` pixels (0: on 8x8 digits a 1-pixel shift changes
            the digit too much and cost NLL in our runs).
        num_samples: teacher samples per input (stochastic teachers; default: the teacher's S).
        search: ``"prune"`` to search student sizes instead (returns a
            :class:`~tflbayes.distill.search.SearchResult`, see :func:`~tflbayes.distill.search.search_students`).
        budgets: for ``search``: fractions of the large student's weights to keep, e.g. ``[0.5, 0.25, 0.1]``.
        verbose: 0 silent, 1 Keras progress bars.
        seed: seeds the student's initialisation, shuffling, perturbations and auxiliary inputs.
        **options: method options (unknown ones raise, listing the valid ones):
            end2: ``loss`` ("proxy" | "nll"), ``temperature`` (initial T, 2.5), ``anneal`` (fraction
            of epochs to reach T=1, 0.5), ``prior`` (proxy smoothing pseudo-count per class, 0.1),
            ``max_precision`` (cap of the proxy precision, 1e3), ``teacher_smoothing`` (nll, 1e-4);
            gped: ``expectations`` (["predictive", "expected_entropy"], optionally
            + "mutual_information"), ``entropy_weight`` (1.0);
            search: ``finetune_epochs``, ``widths``, ``large_width``, ``validation_data``, ``x_ood``,
            ``plot``, ``latency_rounds``.

    Returns:
        The student Posterior (or a SearchResult with ``search``). Its options record the check of
        :mod:`tflbayes.distill.check` (``epistemic_spearman``, ``aux_auroc_student``,
        ``aux_auroc_teacher``, on the held-out transfer inputs under ``epochs="auto"``, else on the
        training ones), with a warning when the student ranks auxiliary inputs worse than a coin.

    Raises:
        InvalidInputError: an unknown method/option, a teacher of the wrong kind (not a
            Posterior; a distilled student; one sample for gped/end2), an empty transfer set, a
            student whose inputs or number of outputs differ from the teacher's.

    Example:
        >>> ens = tb.fit(build, (x, y), method="deep_ensemble", members=5)          # doctest: +SKIP
        >>> student = tb.distill(ens, x, method="end2", epochs=40)                   # doctest: +SKIP
        >>> student.predict(x_test).epistemic                                        # doctest: +SKIP
        >>> tb.convert(student, "bundles/end2", mode="dirichlet")                    # doctest: +SKIP
    """
    check_choice("method", method, DISTILL_METHODS)
    check_classification(teacher, "tb.distill")
    recipe_cls = RECIPES[method]
    if search is not None:
        from tflbayes.distill.search import _check_budgets

        check_choice("search", search, SEARCHES)
        budgets = _check_budgets(budgets)
    elif budgets is not None:
        raise InvalidInputError("`budgets` is a search option; pass search='prune' with it.")
    method_options = _check_options(method, recipe_cls, options, search)
    _check_teacher(teacher, method, recipe_cls)
    x = _transfer(x_transfer, teacher)
    epochs = check_epochs(epochs)
    if search is not None and is_auto(epochs):
        epochs = 30
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    augment = check_positive_int("augment", augment, minimum=0)
    noise_std = check_positive_float("noise_std", noise_std, allow_zero=True)
    shift = check_positive_int("shift", shift, minimum=0)
    if num_samples is not None:
        num_samples = check_positive_int("num_samples", num_samples, minimum=recipe_cls.min_teacher_samples)
    seed_ = 0 if seed is None else int(seed)

    training.set_seed(seed)
    student = build_student_model(build_student, teacher)  # fail fast, before the teacher runs
    aux, aux_kind = _aux(x_aux, x, teacher, seed_)
    t0 = time.perf_counter()
    auto = is_auto(epochs)
    x_fit, aux_fit, x_chk, aux_chk = _split_transfer(x, aux, seed_) if auto else (x, aux, x, aux)
    pool = transfer_pool(x_fit, aux_fit, augment, noise_std, shift, seed_)
    samples = teacher_samples(teacher, pool, num_samples)
    recipe = recipe_cls(method_options, teacher.num_classes, samples.shape[1])
    record = {
        **method_options, "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "augment": augment, "noise_std": noise_std, "shift": shift, "x_aux": aux_kind,
        "transfer_inputs": int(len(x)), "pool_inputs": int(len(pool)),
        "teacher": {"kind": teacher.kind, "method": teacher.method, "num_samples": int(samples.shape[1])},
    }
    if search is not None:
        from tflbayes.distill.search import search_students

        search_opts = {**_SEARCH_OPTIONS, **{k: v for k, v in options.items() if k in _SEARCH_OPTIONS}}
        return search_students(recipe, teacher, pool, samples, student, budgets, record=record, epochs=epochs,
                               batch_size=batch_size, learning_rate=learning_rate, verbose=verbose, seed=seed_,
                               **search_opts)
    x_check = x_chk[:_CHECK_ROWS] if aux_chk is None else np.concatenate([x_chk[:_CHECK_ROWS], aux_chk[:_CHECK_ROWS]])
    check_samples = teacher_samples(teacher, x_check, num_samples)
    model = recipe.student(student)
    _, run = fit_student(model, pool, recipe.targets(samples), recipe, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, verbose=verbose, seed=seed_,
                         validation=(x_check, recipe.targets(check_samples)) if auto else None)
    if run is not None:
        record.update(run, heldout_inputs=int(len(x_check)))
    record["seconds"] = round(time.perf_counter() - t0, 2)
    post = recipe.posterior(model, record, teacher.class_names)
    check = agreement(post, x_check, check_samples, num_in=min(len(x_chk), _CHECK_ROWS))
    post.options.update(check)
    agreement_warning(check, method, "held-out" if auto else "training")
    return post


_CHECK_ROWS = 2000  # at most this many in-distribution and as many auxiliary inputs are checked


def _split_transfer(x, aux, seed):
    """``(x_fit, aux_fit, x_heldout, aux_heldout)``: 15 % of the transfer inputs (at least 1, none when
    there are fewer than 8) and of the auxiliary inputs are held out for early stopping and the check."""
    def split(a, salt):
        if a is None or len(a) < 8:
            return a, a[:0] if a is not None else None
        idx = np.random.default_rng([seed, salt]).permutation(len(a))
        k = max(1, int(round(DISTILL_BUDGET.holdout * len(a))))
        return a[np.sort(idx[k:])], a[np.sort(idx[:k])]

    x_fit, x_held = split(x, 0)
    if len(x_held) == 0:
        raise InvalidInputError(
            f"epochs='auto' holds out part of the transfer set for early stopping and needs at least 8 inputs; "
            f"x_transfer has {len(x)}. Pass more inputs or an integer `epochs`.")
    aux_fit, aux_held = split(aux, 1)
    return x_fit, aux_fit, x_held, aux_held
