"""Every public function and class answers a bad argument with a TflbayesError, never another type.

The surface is ``tb.__all__`` and the ``__all__`` of every module in it (one level of submodules
too). Each callable is called with a value of a foreign type for every required argument (or for
its first argument when none is required). Raising a ``TflbayesError`` passes; returning passes
too (plain records such as ``Prediction`` accept what they are given); any other exception — a
``TypeError`` from ``Path(...)``, an ``AttributeError`` from inside, numpy's ``ValueError`` —
fails, naming the callable and the exception.
"""
from __future__ import annotations

import inspect

import pytest

import tflbayes as tb
from tflbayes.errors import InvalidInputError, InvalidTypeError, TflbayesError


class Foreign:
    """A value no tflbayes function accepts: not a path, an array, a model, a posterior or a number."""

    def __repr__(self):
        return "<Foreign>"


BAD = Foreign()

# Public callables that still answer a bad argument with a non-tflbayes exception (strict xfails:
# once fixed, the entry must go). Empty: every public callable answers with a TflbayesError.
KNOWN: dict = {}


def _surface() -> dict:
    found = {}

    def add(prefix, name, value):
        if inspect.isclass(value) and (issubclass(value, BaseException) or inspect.isabstract(value)):
            return  # the error classes themselves; abstract bases (Python refuses to instantiate them)
        if callable(value) and not inspect.ismodule(value):
            found.setdefault(f"{prefix}.{name}", value)

    for name in tb.__all__:
        value = getattr(tb, name)
        if not inspect.ismodule(value) or callable(value):  # tb.distill: a function, or the callable package
            add("tb", name, getattr(value, name, value) if inspect.ismodule(value) else value)
        if not inspect.ismodule(value):
            continue
        for sub in getattr(value, "__all__", []):
            member = getattr(value, sub, None)
            if inspect.ismodule(member):
                for leaf in getattr(member, "__all__", []):
                    add(member.__name__, leaf, getattr(member, leaf, None))
            else:
                add(value.__name__, sub, member)
    return found


SURFACE = _surface()


def _bad_call(fn):
    sig = inspect.signature(fn)
    args, kwargs = [], {}
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")]
    for p in params:
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY):
            args.append(BAD)
        elif p.default is p.empty and p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = BAD
    if not args and not kwargs:
        first = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY)]
        if not first:
            pytest.skip(f"{fn!r} takes no argument that could be bad")
        args = [BAD]
    return args, kwargs


def test_the_surface_is_large():
    # a broken discovery must not pass as "nothing failed"
    assert len(SURFACE) >= 40, sorted(SURFACE)
    for name in ("tb.fit", "tb.convert", "tb.load", "tb.load_bundle", "tb.distill", "tb.EnsemblePosterior",
                 "tflbayes.uncertainty.decompose", "tflbayes.metrics.evaluate", "tflbayes.compress.prune"):
        assert name in SURFACE, name


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN[n])) if n in KNOWN else n
     for n in sorted(SURFACE)],
)
def test_bad_argument_raises_a_tflbayes_error(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing a call might write lands in the checkout
    fn = SURFACE[name]
    args, kwargs = _bad_call(fn)
    try:
        fn(*args, **kwargs)
    except TflbayesError:
        pass
    except Exception as e:  # noqa: BLE001  (the point of the test)
        pytest.fail(f"{name}({', '.join(map(repr, args))}) raised {type(e).__module__}.{type(e).__name__}, "
                    f"not a TflbayesError: {str(e)[:300]}")


def test_invalid_type_error_is_caught_as_type_error_and_value_error():
    err = InvalidTypeError("x")
    assert isinstance(err, TflbayesError) and isinstance(err, InvalidInputError)
    assert isinstance(err, TypeError) and isinstance(err, ValueError)
    assert tb.InvalidTypeError is InvalidTypeError


def test_path_and_array_checks_name_the_argument():
    from tflbayes._checks import as_float_array, check_path

    with pytest.raises(InvalidTypeError, match="`out`.*Foreign"):
        check_path("out", BAD)
    assert str(check_path("out", "a/b")) == "a/b"
    with pytest.raises(InvalidInputError, match="`probs` must be an array of numbers"):
        as_float_array([[1.0, "x"]], "probs")


@pytest.mark.parametrize("method", [
    "predict", "sample_probs",
    "save", "member_model",
])
def test_posterior_methods_refuse_a_foreign_argument(untrained_ensemble, method):
    with pytest.raises(TflbayesError):
        getattr(untrained_ensemble, method)(BAD)


@pytest.mark.parametrize("method", ["predict", "sample_probs", "run", "decide"])
def test_bundle_methods_refuse_a_foreign_argument(tiny_bundle, method):
    b = tb.load_bundle(tiny_bundle)
    with pytest.raises(TflbayesError):
        getattr(b, method)(BAD)
