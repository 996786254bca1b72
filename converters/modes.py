"""The conversion modes: which posterior kinds each fits, what it builds, what it outputs.

``tb.convert`` asks this registry instead of switching on mode names and posterior kinds:

- :func:`default_mode` ``(posterior) -> name``: the mode a posterior converts in by default;
- :func:`check_fits` ``(posterior, mode)``: a ``ConversionError`` saying which modes do fit;
- :func:`build` ``(posterior, mode, request) -> Built``: the graphs of the bundle (``tf.function``
  per file), the float head graph of an int8 bundle, the pipeline's outputs, what the body hands
  the head, and the layout chosen.

A mode is a :class:`Mode` (``name``, ``kinds`` it fits, ``default_for`` kinds, a one-line
``description`` and its ``build`` function); :func:`register_mode` adds one (a new posterior kind
registers its mode here, nothing else in the converter changes).

Layouts (``Request.layout``): ``batched`` is ``"packed"`` (grouped convs / BATCH_MATMUL,
:mod:`~tflbayes.converters.graphs.batched`) or ``"general"`` (S member networks side by side,
:mod:`~tflbayes.converters.graphs.general`); ``stochastic`` is ``"packed"`` (the chain builder
with broadcast noise, LRT and packed masks, :mod:`~tflbayes.converters.graphs.stochastic`) or
``"general"`` (any functional graph, :mod:`~tflbayes.converters.graphs.stochastic_general`).
``"auto"`` takes packed where the model is a chain that builder supports, else general; the
Edge TPU always gets the general batched layout (its compiler rejects grouped CONV_2D).

Recurrent layers: the TFLite converter (TF 2.21) crashes the process (SIGSEGV) when it
quantizes a GRU / LSTM loop to full integer. The builders unroll recurrent layers with a static
sequence of at most ``MAX_UNROLL`` steps (:mod:`~tflbayes.converters.graphs.recurrent`), which
quantize at every precision; :func:`check_int8_layers` refuses the others before the converter
runs, naming the layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from tflbayes._keras import tf
from tflbayes.errors import ConversionError, InvalidInputError

__all__ = ["Mode", "Request", "Built", "MODE_REGISTRY", "LAYOUTS", "register_mode", "default_mode",
           "check_fits", "build", "check_int8_layers", "head_fn"]

LAYOUTS = ("auto", "packed", "general")
_ENSEMBLE_OUTPUTS = ["probs", "total", "aleatoric", "epistemic", "member_probs"]


@dataclass(frozen=True)
class Request:
    """What ``tb.convert`` asks a mode for."""

    num_samples: int
    batch_size: int = 1
    precision: str = "float32"
    sparse_layout: str = "dense"
    layout: str = "auto"

    @property
    def int8(self) -> bool:
        return self.precision in ("int8", "edgetpu")


@dataclass
class Built:
    """What a mode built: ``bodies`` ``[(file stem, tf.function)]``; ``head`` the float head graph
    of an int8 bundle (``head.tflite``, None where the head is in the graph or on the host);
    ``outputs`` the pipeline's outputs; ``body_out`` what an int8 body hands its head; ``layout``."""

    bodies: list
    outputs: list
    body_out: list
    head: Optional[object] = None
    layout: Optional[str] = None


@dataclass(frozen=True)
class Mode:
    name: str
    kinds: tuple
    description: str
    build: Callable
    default_for: tuple = field(default_factory=tuple)


MODE_REGISTRY: dict = {}


def register_mode(mode: Mode) -> Mode:
    """Add (or replace) a conversion mode."""
    MODE_REGISTRY[mode.name] = mode
    return mode


def default_mode(posterior) -> str:
    for mode in MODE_REGISTRY.values():
        if posterior.kind in mode.default_for:
            return mode.name
    raise ConversionError(f"No conversion mode converts a {type(posterior).__name__} (kind {posterior.kind!r}).")


def check_fits(posterior, mode: str) -> None:
    if mode not in MODE_REGISTRY:
        raise InvalidInputError(f"Invalid value received for argument `mode`. Expected one of "
                                f"{', '.join(map(repr, MODE_REGISTRY))}. Received: mode={mode!r}")
    if posterior.kind in MODE_REGISTRY[mode].kinds:
        return
    if mode == "dirichlet":
        raise ConversionError(
            "mode='dirichlet' needs a DirichletPosterior (an EnD² student from "
            f"tb.distill(teacher, x, method='end2')); received a {type(posterior).__name__}.")
    ok = [m.name for m in MODE_REGISTRY.values() if posterior.kind in m.kinds]
    raise ConversionError(f"mode={mode!r} does not fit a {type(posterior).__name__}; use mode in {ok}.")


def build(posterior, mode: str, request: Request) -> Built:
    """The graphs of ``posterior`` in ``mode`` (see :class:`Built`)."""
    check_fits(posterior, mode)
    if request.layout not in LAYOUTS:
        raise InvalidInputError(f"Invalid value received for argument `layout`. Expected one of "
                                f"{', '.join(map(repr, LAYOUTS))}. Received: layout={request.layout!r}")
    return MODE_REGISTRY[mode].build(posterior, request)


# -- shared pieces ---------------------------------------------------------------------------------
def check_int8_layers(layers, precision: str, unrolls: bool = True) -> None:
    """Refuse full-integer quantization of recurrent loops (the TFLite converter segfaults on them)
    before the converter runs; see :mod:`~tflbayes.converters.graphs.recurrent`."""
    from tflbayes.converters.graphs.recurrent import check_int8_recurrent

    check_int8_recurrent(layers, precision, unrolls)


def _model_layers(model) -> list:
    from tflbayes.converters.graphs.walk import find_layers

    return find_layers(model, lambda layer: True)


def head_fn(num_samples: int, batch_size: int, num_classes: int):
    """The float uncertainty head on ``logits [S, B, C]`` (``head.tflite`` after an int8 body)."""
    from tflbayes.converters.graphs.head import head_from_logits

    @tf.function(input_signature=[tf.TensorSpec([num_samples, batch_size, num_classes], tf.float32, name="logits")])
    def head(logits):
        return head_from_logits(logits, member_probs=True)

    return head


def _stem(request) -> str:
    return "body" if request.int8 else "model"


# -- the modes -------------------------------------------------------------------------------------
def _members(posterior, r: Request) -> Built:
    from tflbayes.converters.graphs.members import build_member

    check_int8_layers(_model_layers(posterior.model), r.precision)
    bodies = [(f"member_{i:03d}", build_member(posterior, i, batch_size=r.batch_size)) for i in range(r.num_samples)]
    return Built(bodies, list(_ENSEMBLE_OUTPUTS), ["logits"])


def _batched(posterior, r: Request) -> Built:
    if posterior.kind == "distilled":  # a BDK / GPED student and its heads
        from tflbayes.converters.graphs.distilled import build_gped, gped_head_fn

        check_int8_layers(_model_layers(posterior.model), r.precision)
        outputs = ["probs", "total"] + (["aleatoric", "epistemic"] if len(posterior.expectations) > 1 else [])
        return Built([(_stem(r), build_gped(posterior, batch_size=r.batch_size, head=not r.int8))], outputs,
                     ["student_outputs"], gped_head_fn(posterior, r.batch_size) if r.int8 else None)
    from tflbayes.converters.graphs.general import build_batched_general, choose_layout

    check_int8_layers(_model_layers(posterior.model), r.precision)
    layout = choose_layout(posterior, r.layout, r.precision)
    if r.sparse_layout == "shared_mask" and layout != "packed":
        raise ConversionError(
            "sparse_layout='shared_mask' needs the packed batched layout (a chain of Dense / Conv2D / pooling "
            f"layers); model {posterior.model.name!r} takes only layout='general'. Use sparse_layout='dense'.")
    with_head = not r.int8
    if layout == "packed":
        from tflbayes.converters.graphs.batched import build_batched

        fn = build_batched(posterior, batch_size=r.batch_size, head=with_head, member_probs=with_head,
                           sparse_layout="shared_mask" if r.sparse_layout == "shared_mask" else "dense")
    else:
        fn = build_batched_general(posterior, batch_size=r.batch_size, head=with_head, member_probs=with_head)
    head = head_fn(r.num_samples, r.batch_size, posterior.num_classes) if r.int8 else None
    return Built([(_stem(r), fn)], list(_ENSEMBLE_OUTPUTS), ["logits"], head, layout)


def _stochastic_layout(posterior, layout: str) -> str:
    if layout != "auto":
        return layout
    from tflbayes.converters.graphs.stochastic import build_stochastic

    try:
        build_stochastic(posterior, 1, part="all")
    except ConversionError:
        return "general"
    return "packed"


def _stochastic(posterior, r: Request) -> Built:
    from tflbayes.converters.graphs.stochastic import build_stochastic
    from tflbayes.converters.graphs.stochastic_general import build_stochastic_general, stochastic_cut
    from tflbayes.converters.graphs.walk import describe

    cut = stochastic_cut(posterior)
    if r.int8:
        if not cut.has_prefix:
            first = cut.suffix[0].layer
            raise ConversionError(
                f"Model {posterior.model.name!r} samples from its first weighted layer ({describe(first)}): no "
                "deterministic prefix to run in int8; use precision='dynamic' or 'float32'.")
        check_int8_layers(cut.prefix_layers, r.precision)
    layout = _stochastic_layout(posterior, r.layout)
    s, b = r.num_samples, r.batch_size
    if layout == "packed":
        if not r.int8:
            return Built([("model", build_stochastic(posterior, s, batch_size=b, head=True, member_probs=True))],
                         list(_ENSEMBLE_OUTPUTS), ["features"], layout=layout)
        body = build_stochastic(posterior, s, batch_size=b, part="prefix")
        head = build_stochastic(posterior, s, batch_size=b, head=True, member_probs=True, part="suffix")
        return Built([("body", body)], list(_ENSEMBLE_OUTPUTS), ["features"], head, layout)
    if not r.int8:
        fn, _ = build_stochastic_general(posterior, s, b, head=True, part="all")
        return Built([("model", fn)], list(_ENSEMBLE_OUTPUTS), cut.feature_names(), layout=layout)
    body, _ = build_stochastic_general(posterior, s, b, part="prefix")
    head, _ = build_stochastic_general(posterior, s, b, head=True, part="suffix")
    return Built([("body", body)], list(_ENSEMBLE_OUTPUTS), cut.feature_names(), head, layout)


def _dirichlet(posterior, r: Request) -> Built:
    from tflbayes.converters.graphs.dirichlet import build_dirichlet, dirichlet_head_fn

    check_int8_layers(_model_layers(posterior.model), r.precision)
    fn = build_dirichlet(posterior, batch_size=r.batch_size, head=not r.int8)
    return Built([(_stem(r), fn)], ["probs", "total", "aleatoric", "epistemic", "alpha"], ["alpha_logits"],
                 dirichlet_head_fn(r.batch_size, posterior.num_classes) if r.int8 else None)


def _single_pass(posterior, r: Request) -> Built:
    from tflbayes.converters.graphs.single_pass import build_single_pass, single_pass_head_fn, single_pass_outputs

    check_int8_layers(_model_layers(posterior.model), r.precision, unrolls=False)
    outputs, body_out = single_pass_outputs(posterior)
    fn = build_single_pass(posterior, batch_size=r.batch_size, head=not r.int8)
    return Built([(_stem(r), fn)], list(outputs), list(body_out),
                 single_pass_head_fn(posterior, r.batch_size) if r.int8 else None)


register_mode(Mode("members", ("ensemble",), "one graph per ensemble member; the head runs on the host",
                   _members))
register_mode(Mode("batched", ("ensemble", "distilled"),
                   "all members in one graph (packed or general layout), head in the graph",
                   _batched, default_for=("ensemble", "distilled")))
register_mode(Mode("stochastic", ("stochastic",), "S samples per invoke from builtin random ops",
                   _stochastic, default_for=("stochastic",)))
register_mode(Mode("dirichlet", ("dirichlet",), "the EnD² student and its closed-form Dirichlet head",
                   _dirichlet, default_for=("dirichlet",)))
register_mode(Mode("single_pass", ("single_pass", "laplace"),
                   "MIMO / BatchEnsemble / last-layer Laplace: one forward pass, head in the graph",
                   _single_pass, default_for=("single_pass", "laplace")))
