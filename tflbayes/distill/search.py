"""Student search: prune a large distilled student to each budget, compare with width multipliers.

The survey (§4) notes that the best student for a budget is found by architecture search, and
that GPED (Vadera et al. 2020) did it by *pruning*: distill into a large student, then prune it
step by step, fine-tuning on the distillation loss after each step; this beat searching over
layer-width multipliers. :func:`search_students` does exactly that and measures both families:

1. distill into the large student (``build_student``'s architecture x ``large_width``);
2. for each budget ``b`` (fraction of the large student's prunable weights kept), largest
   first: TF-MOT ``prune_low_magnitude`` from the previous sparsity to ``1 - b`` (polynomial
   schedule over 70 % of the fine-tuning steps), fine-tune on the distillation loss at T = 1,
   ``strip_pruning``; the next budget starts from this student (iterative pruning);
3. for each budget, a width-multiplied student with about ``b`` x the large student's weights,
   distilled from scratch with the same recipe and epochs;
4. every student is converted to LiteRT (float32, batch 1, its uncertainty head in the graph)
   and measured: non-zero weights, bytes of the ``.tflite`` file and gzip-compressed (what
   pruning saves on disk and over the air: LiteRT runs pruned kernels dense, so pruning does not
   cut latency, width does), median invoke latency (interleaved rounds), and quality on held-out
   transfer inputs (the distillation loss at T = 1) and, given ``validation_data``, NLL and
   accuracy (and OOD AUROC with ``x_ood``).

The result lists every point, the Pareto frontiers (size or latency vs quality), and plots them.
"""
from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from tflbayes._checks import check_inputs, check_labelled, check_positive_int
from tflbayes._keras import keras, tf
from tflbayes.distill.recipe import fit_student
from tflbayes.distill.students import widen
from tflbayes.errors import InvalidInputError

__all__ = ["SearchPoint", "SearchResult", "search_students", "pareto_front"]

_HOLDOUT = 0.1


@dataclass
class SearchPoint:
    """One student of the search.

    Attributes:
        name: ``"large"``, ``"prune@0.25"`` or ``"width@0.25"`` (the budget).
        family: ``"large"``, ``"prune"`` or ``"width"``.
        budget: fraction of the large student's weights it may use.
        params: non-zero weights.
        tflite_bytes / gzip_bytes: size of its float32 ``.tflite`` file, raw and gzip -9.
        latency_us: median LiteRT invoke time, batch 1, one thread.
        quality: ``distill_loss`` (held-out transfer inputs, lower is better) and, with
            validation data, ``nll`` and ``accuracy`` (and ``ood_auroc``).
        score: the quality the frontier uses (``nll`` with validation data, else ``distill_loss``).
    """

    name: str
    family: str
    budget: float
    params: int
    tflite_bytes: int
    gzip_bytes: int
    latency_us: float
    quality: dict = field(default_factory=dict)
    score: float = float("nan")


def pareto_front(points: Sequence[SearchPoint], axis: str = "gzip_bytes") -> list:
    """The points no other point beats on both ``axis`` (cost, lower is better) and ``score``."""
    from tflbayes.bench.pareto import pareto_front as front_indices

    points = list(points)
    keep = front_indices([getattr(p, axis) for p in points], [p.score for p in points], lower_quality_is_better=True)
    return [points[i] for i in keep]


@dataclass
class SearchResult:
    """What :func:`search_students` found.

    Attributes:
        points: every student measured (large, pruned, width-multiplied).
        students: name -> the student Posterior.
        metric: the quality the score is (``"nll"`` or ``"distill_loss"``).
        plot_path: where the frontier plot was written (or None).
    """

    points: list
    students: dict
    metric: str
    plot_path: Optional[Path] = None

    def frontier(self, axis: str = "gzip_bytes") -> list:
        """Pareto-optimal points for ``axis`` in ``gzip_bytes``, ``tflite_bytes``, ``params``, ``latency_us``."""
        if axis not in ("gzip_bytes", "tflite_bytes", "params", "latency_us"):
            raise InvalidInputError(
                "Invalid value received for argument `axis`. Expected one of 'gzip_bytes', 'tflite_bytes', "
                f"'params', 'latency_us'. Received: axis={axis!r}")
        return pareto_front(self.points, axis)

    def best(self, max_gzip_bytes: Optional[int] = None, max_latency_us: Optional[float] = None):
        """The best-scoring student within the limits (None if none fits)."""
        ok = [p for p in self.points if (max_gzip_bytes is None or p.gzip_bytes <= max_gzip_bytes)
              and (max_latency_us is None or p.latency_us <= max_latency_us)]
        return self.students[min(ok, key=lambda p: p.score).name] if ok else None

    def to_dict(self) -> dict:
        return {"metric": self.metric, "points": [asdict(p) for p in self.points],
                "frontier_size": [p.name for p in self.frontier("gzip_bytes")],
                "frontier_latency": [p.name for p in self.frontier("latency_us")]}

    def plot(self, path) -> Path:
        """Score against compressed size and against latency, per family, frontier marked (PNG/SVG/PDF)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from tflbayes.metrics.plots import save_figure

        fig = Figure(figsize=(9.0, 3.8), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 2)
        styles = {"large": ("k", "*"), "prune": ("tab:blue", "o"), "width": ("tab:orange", "s")}
        for ax, axis, label, scale in ((axes[0], "gzip_bytes", "size (gzip KiB)", 1 / 1024),
                                       (axes[1], "latency_us", "LiteRT latency, batch 1 (µs)", 1.0)):
            for fam, (color, marker) in styles.items():
                pts = sorted((p for p in self.points if p.family == fam), key=lambda p: p.budget)
                if pts:
                    ax.plot([getattr(p, axis) * scale for p in pts], [p.score for p in pts], marker=marker,
                            color=color, linestyle="-" if fam != "large" else "", label=fam)
            front = self.frontier(axis)
            ax.step([getattr(p, axis) * scale for p in front], [p.score for p in front], where="post",
                    color="tab:green", alpha=0.5, linewidth=3, label="frontier")
            ax.set_xlabel(label)
            ax.set_ylabel(self.metric + " (lower is better)")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("distilled students: pruning vs width multipliers")
        self.plot_path = save_figure(fig, path)
        return self.plot_path


# -- the pieces ----------------------------------------------------------------------------------
def _nonzero(model) -> int:
    return int(sum(int(np.count_nonzero(w)) for w in model.get_weights()))


def _width_for(base, large_params: int, budget: float, large_width: float) -> float:
    """The width multiplier (relative to ``base``) whose student has about ``budget * large_params`` weights."""
    target = budget * large_params
    lo, hi = 0.01, large_width
    for _ in range(20):
        mid = (lo + hi) / 2
        n = sum(int(w.size) for w in widen(base, mid).get_weights())
        lo, hi = (mid, hi) if n < target else (lo, mid)
    return round(hi, 4)


def _prune(model, recipe, x, y, *, initial: float, final: float, epochs: int, batch_size: int,
           learning_rate: float, verbose: int):
    import tensorflow_model_optimization as tfmot

    sp = tfmot.sparsity.keras
    steps = epochs * int(np.ceil(len(x) / batch_size))
    schedule = sp.PolynomialDecay(initial_sparsity=initial, final_sparsity=final, begin_step=0,
                                  end_step=max(1, int(0.7 * steps)), frequency=max(1, steps // 50))
    # prune_low_magnitude wraps the model's own layer objects (their variables get masked in
    # place): prune a copy so that the student it starts from stays as it was.
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    try:
        wrapped = sp.prune_low_magnitude(copy, pruning_schedule=schedule)
    except ValueError as e:
        raise InvalidInputError(f"TF-MOT cannot prune the student: {str(e).splitlines()[0]}") from None
    fit_student(wrapped, x, y, recipe, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                verbose=verbose, callbacks=[sp.UpdatePruningStep()], anneal=False,
                what=f"student pruned to sparsity {final:.2f}")
    return sp.strip_pruning(wrapped)


def _graph(posterior):
    if posterior.kind == "dirichlet":
        from tflbayes.converters.graphs.dirichlet import build_dirichlet

        return build_dirichlet(posterior, 1)
    from tflbayes.converters.graphs.distilled import build_gped

    return build_gped(posterior, 1)


def _tflite(posterior) -> bytes:
    from tflbayes.converters.tflite import to_tflite

    return to_tflite(_graph(posterior), posterior.model, "float32")


def interleaved_latency(blobs: dict, rounds: int = 200, warmup: int = 20, num_threads: int = 1, x=None) -> dict:
    """Median invoke time (µs) of each LiteRT model in ``blobs`` (name -> bytes), batch as built.

    Every round invokes each model once in a shuffled order, so drifts of the machine hit all
    alike; ``warmup`` rounds are dropped.
    """
    from ai_edge_litert.interpreter import Interpreter

    from tflbayes.bench.timing import interleaved

    its = {}
    for name, blob in blobs.items():
        it = Interpreter(model_content=blob, num_threads=num_threads)
        it.allocate_tensors()
        det = it.get_input_details()[0]
        xin = np.random.default_rng(0).random(det["shape"]).astype(np.float32) if x is None else x
        it.set_tensor(det["index"], xin)
        its[name] = it
    times = interleaved({name: it.invoke for name, it in its.items()}, rounds=rounds, warmup=warmup, shuffle_seed=0)
    return {name: float(np.median(v)) * 1e6 for name, v in times.items()}


def _quality(recipe, posterior, model, x_val, y_val, validation_data, x_ood) -> dict:
    loss = recipe.loss()
    q = {"distill_loss": float(np.mean(loss.call(tf.constant(y_val), model(tf.constant(x_val), training=False))))}
    if validation_data is not None:
        from tflbayes.metrics.quality import accuracy, nll, ood_auroc

        xv, yv = validation_data
        pred = posterior.predict(xv)
        q["nll"] = nll(pred.probs, yv)
        q["accuracy"] = accuracy(pred.probs, yv)
        if x_ood is not None:
            po = posterior.predict(x_ood)
            score = "epistemic" if pred.epistemic is not None else "total"
            q["ood_auroc"] = ood_auroc(getattr(pred, score), getattr(po, score))
            q["ood_score"] = score
    return q


def _check_budgets(budgets) -> list:
    if budgets is None:
        raise InvalidInputError("search='prune' needs budgets=[...]: fractions of the large student's weights "
                                "to keep, e.g. budgets=[0.5, 0.25, 0.1].")
    try:
        bs = [float(b) for b in budgets]
    except (TypeError, ValueError):
        raise InvalidInputError(f"Invalid value received for argument `budgets`. Expected a list of fractions in "
                                f"(0, 1]. Received: budgets={budgets!r}") from None
    if not bs or any(not 0 < b <= 1 for b in bs):
        raise InvalidInputError(f"Invalid value received for argument `budgets`. Expected a non-empty list of "
                                f"fractions in (0, 1]. Received: budgets={budgets!r}")
    return sorted(set(bs), reverse=True)


def search_students(recipe, teacher, pool, samples, base_model, budgets, *, record: dict, epochs: int,
                    batch_size: int, learning_rate: float, verbose: int = 0, seed: int = 0,
                    finetune_epochs: Optional[int] = None, widths: Optional[Sequence[float]] = None,
                    large_width: float = 2.0, validation_data=None, x_ood=None, plot=None,
                    latency_rounds: int = 200) -> SearchResult:
    """Prune a large distilled student to each budget and compare with width multipliers (module docstring).

    Called by :func:`tflbayes.distill.distill` with ``search="prune"``; the arguments after
    ``budgets`` are its search options.

    Args:
        recipe: the method (:mod:`tflbayes.distill.recipe`).
        teacher: the teacher posterior (for class names).
        pool, samples: the transfer pool and the teacher's ``[N, S, C]`` samples on it.
        base_model: the checked C-logit student architecture.
        budgets: fractions of the large student's weights to keep, in (0, 1].
        finetune_epochs: epochs of fine-tuning per pruning step (default ``max(1, epochs // 3)``).
        widths: width multipliers (relative to ``base_model``) of the width family; default:
            the ones matching each budget's weight count.
        large_width: the large student is ``base_model`` x this width.
        validation_data: ``(x_val, y_val)`` for NLL / accuracy (then the frontier's score is NLL).
        x_ood: OOD inputs for the AUROC (epistemic, or total where a student has none).
        plot: file to write the frontier plot to (PNG, SVG, PDF), or None.
        latency_rounds: interleaved timing rounds per student.
    """
    budgets = _check_budgets(budgets)
    finetune = check_positive_int("finetune_epochs", finetune_epochs if finetune_epochs is not None
                                  else max(1, epochs // 3))
    if not isinstance(large_width, (int, float)) or not large_width > 0:
        raise InvalidInputError(f"Invalid value received for argument `large_width`. Expected a number > 0. "
                                f"Received: large_width={large_width!r}")
    if validation_data is not None:
        validation_data = check_labelled(validation_data, teacher.input_shape, teacher.num_classes, "validation_data")
    if x_ood is not None:
        x_ood = check_inputs(x_ood, teacher.input_shape, "x_ood")
    targets = recipe.targets(samples)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(pool))
    n_val = max(1, int(_HOLDOUT * len(pool)))
    val, train = perm[:n_val], perm[n_val:]
    x_tr, y_tr, x_val, y_val = pool[train], targets[train], pool[val], targets[val]
    fit = dict(batch_size=batch_size, learning_rate=learning_rate, verbose=verbose)

    students, families, budget_of = {}, {}, {}

    def wrap(name, family, budget, model, extra):
        students[name] = recipe.posterior(model, {**record, "search": {"family": family, "budget": budget, **extra}},
                                          teacher.class_names)
        families[name], budget_of[name] = family, budget

    keras.utils.set_random_seed(seed)
    large = recipe.student(widen(base_model, float(large_width)) if large_width != 1 else base_model)
    fit_student(large, x_tr, y_tr, recipe, epochs=epochs, what="large student", **fit)
    wrap("large", "large", 1.0, large, {"width": float(large_width)})
    large_params = sum(int(w.size) for w in large.get_weights())

    current, sparsity = large, 0.0
    for b in budgets:
        if b >= 1.0:
            continue
        target = 1.0 - b
        current = _prune(current, recipe, x_tr, y_tr, initial=sparsity, final=target, epochs=finetune, **fit)
        sparsity = target
        wrap(f"prune@{b:g}", "prune", b, current, {"sparsity": target})

    small = [b for b in budgets if b < 1.0]
    if widths is None:
        pairs = [(b, _width_for(base_model, large_params, b, float(large_width))) for b in small]
    else:
        pairs = [(None, float(m)) for m in widths]
    for b, m in pairs:
        keras.utils.set_random_seed(seed)
        model = recipe.student(widen(base_model, float(m)))
        fit_student(model, x_tr, y_tr, recipe, epochs=epochs, what=f"student of width {m:g}", **fit)
        budget = b if b is not None else sum(int(w.size) for w in model.get_weights()) / large_params
        wrap(f"width@{budget:.3g}", "width", float(budget), model, {"width": float(m)})

    blobs = {name: _tflite(post) for name, post in students.items()}
    latency = interleaved_latency(blobs, rounds=int(latency_rounds))
    metric = "nll" if validation_data is not None else "distill_loss"
    points = []
    for name, post in students.items():
        q = _quality(recipe, post, post.model, x_val, y_val, validation_data, x_ood)
        points.append(SearchPoint(name=name, family=families[name], budget=float(budget_of[name]),
                                  params=_nonzero(post.model), tflite_bytes=len(blobs[name]),
                                  gzip_bytes=len(gzip.compress(blobs[name], 9)), latency_us=float(latency[name]),
                                  quality=q, score=float(q[metric])))
    result = SearchResult(points=points, students=students, metric=metric)
    if plot is not None:
        result.plot(plot)
    return result
