"""Exceptions tflbayes raises on bad input. All derive from :class:`TflbayesError`."""

__all__ = [
    "TflbayesError",
    "InvalidInputError",
    "InvalidTypeError",
    "PosteriorFormatError",
    "BundleError",
    "ConversionError",
    "VerificationError",
    "DivergenceError",
]


class TflbayesError(Exception):
    """Base class of every error tflbayes raises about the user's input, files or options."""


class InvalidInputError(TflbayesError, ValueError):
    """An argument or an input array is wrong (shape, dtype, NaN/inf, unknown option)."""


class InvalidTypeError(InvalidInputError, TypeError):
    """An argument has the wrong type (a path that is not a str / os.PathLike, a model that is not a
    Keras model, ...). Also a ``TypeError``, so callers that catch ``TypeError`` keep working."""


class PosteriorFormatError(TflbayesError):
    """A posterior folder is missing, truncated, edited or of an unknown format version."""


class BundleError(TflbayesError):
    """A LiteRT bundle is missing, corrupt, or its manifest does not match its model."""


class ConversionError(TflbayesError):
    """A posterior cannot be converted as asked (unsupported layer, Flex op refused, ...)."""


class VerificationError(ConversionError):
    """A converted model disagrees with its Keras posterior past the documented tolerance."""


class DivergenceError(TflbayesError):
    """Training diverged (NaN/inf loss). ``samples`` holds what was collected before."""

    def __init__(self, message, samples=None):
        super().__init__(message)
        self.samples = samples
