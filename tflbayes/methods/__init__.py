"""Training methods: each one makes a Posterior (see :func:`tflbayes.fit`)."""
from tflbayes.methods.fit import METHODS, fit
from tflbayes.methods.registry import Method, TrainConfig, register_method

__all__ = ["fit", "METHODS", "Method", "TrainConfig", "register_method"]
