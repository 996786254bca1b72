"""The one place tflbayes imports Keras from.

TFP's layers and TF-MOT need Keras 2, which ships as the ``tf_keras`` package. Every module
of tflbayes does ``from tflbayes._keras import keras`` and never ``tf.keras``.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

try:
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
except ModuleNotFoundError as e:  # the base install (runtime only) has no TensorFlow
    raise ModuleNotFoundError(
        f"{e.name} is not installed: training, compression, distillation and conversion need the "
        f"train extra (pip install 'tflbayes[train]'); the base install only runs LiteRT bundles.",
        name=e.name,
    ) from e

tf.get_logger().setLevel("ERROR")

__all__ = ["keras", "tf", "register"]


def register(cls):
    """Register a public Keras class under the ``tflbayes`` package for safe (de)serialization."""
    return keras.saving.register_keras_serializable(package="tflbayes")(cls)
