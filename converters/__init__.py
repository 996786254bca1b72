"""LiteRT conversion of tflbayes posteriors (installed as ``tflbayes.converters``)."""
