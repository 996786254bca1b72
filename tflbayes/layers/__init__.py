"""Keras layers whose every forward pass is a posterior sample, convertible to LiteRT builtins.

All randomness comes from ``tf.random.uniform`` / ``tf.random.normal``, which convert to the
LiteRT builtins ``RANDOM_UNIFORM`` / ``RANDOM_STANDARD_NORMAL`` (no Flex ops). Importing this
module registers the layers for Keras deserialization (``model_from_json``, ``load_model``).
"""
from tflbayes.layers.dropout import MCDropout
from tflbayes.layers.variational import ESTIMATORS, VariationalConv2D, VariationalDense

# The mean-field Gaussian layers: each has kernel_loc, kernel_rho, bias, kernel_std(),
# kl_divergence(), a settable kl_weight and an estimator.
VARIATIONAL_LAYERS = (VariationalDense, VariationalConv2D)

__all__ = [
    # MC dropout
    "MCDropout",
    # mean-field variational inference
    "VariationalDense",
    "VariationalConv2D",
    "VARIATIONAL_LAYERS",
    "ESTIMATORS",
]
