"""Keras layers whose every forward pass is a posterior sample, convertible to LiteRT builtins.

All randomness comes from ``tf.random.uniform`` / ``tf.random.normal``, which convert to the
LiteRT builtins ``RANDOM_UNIFORM`` / ``RANDOM_STANDARD_NORMAL`` (no Flex ops). Importing this
module registers the layers for Keras deserialization (``model_from_json``, ``load_model``).
"""
from tflbayes.layers.dropout import MCDropout
from tflbayes.layers.variational import ESTIMATORS, VariationalConv2D, VariationalDense
from tflbayes.layers.variational_conv import VariationalConv1D, VariationalDepthwiseConv2D
from tflbayes.layers.batch_ensemble import BATCH_ENSEMBLE_LAYERS, Conv2DBatchEnsemble, DenseBatchEnsemble
from tflbayes.layers.laplace import LaplaceHead
from tflbayes.layers.single_pass import RepeatChannels, TemperatureScale, TileMembers, UntileMembers

# The mean-field Gaussian layers: each has kernel_loc, kernel_rho, bias, kernel_std(),
# kl_divergence(), a settable kl_weight and an estimator.
MEAN_FIELD_LAYERS = (VariationalDense, VariationalConv2D, VariationalConv1D, VariationalDepthwiseConv2D)
# The ones the packed chain converters (tflbayes.converters.graphs) sample by hand; the 1-D and
# depthwise twins run as their own Keras layers in the general stochastic graph.
VARIATIONAL_LAYERS = (VariationalDense, VariationalConv2D)

__all__ = [
    # MC dropout
    "MCDropout",
    # mean-field variational inference
    "VariationalDense",
    "VariationalConv2D",
    "VariationalConv1D",
    "VariationalDepthwiseConv2D",
    "VARIATIONAL_LAYERS",
    "MEAN_FIELD_LAYERS",
    "ESTIMATORS",
    # single-pass posteriors (BatchEnsemble, MIMO), last-layer Laplace, calibration
    "DenseBatchEnsemble", "Conv2DBatchEnsemble", "BATCH_ENSEMBLE_LAYERS", "LaplaceHead",
    "RepeatChannels", "TileMembers", "UntileMembers", "TemperatureScale",
]
