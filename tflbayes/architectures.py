"""Built-in architectures for the bundled data (the CLI's ``--arch mlp|cnn``)."""
from __future__ import annotations

from tflbayes._keras import keras
from tflbayes._checks import check_choice

__all__ = ["ARCHITECTURES", "mlp", "cnn", "builder"]

ARCHITECTURES = ("mlp", "cnn")


def mlp(input_shape, num_classes, hidden=(128, 64)):
    """Flatten -> Dense(relu) x len(hidden) -> Dense(num_classes) logits."""
    layers = [keras.Input(tuple(input_shape)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers.append(keras.layers.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name="mlp")


def cnn(input_shape, num_classes, filters=(16, 32), dense=64):
    """A small CNN: [Conv3x3(relu) -> MaxPool2 (when the map is >= 8 px)] x 2 -> Dense -> logits."""
    if len(input_shape) != 3:
        raise ValueError(f"The CNN needs image inputs [H, W, C]. Received input_shape={tuple(input_shape)}")
    layers = [keras.Input(tuple(input_shape))]
    size = min(input_shape[0], input_shape[1])
    for f in filters:
        layers.append(keras.layers.Conv2D(f, 3, padding="same", activation="relu"))
        if size >= 8:
            layers.append(keras.layers.MaxPooling2D(2))
            size //= 2
    layers += [keras.layers.Flatten(), keras.layers.Dense(dense, activation="relu"),
               keras.layers.Dense(num_classes, name="logits")]
    return keras.Sequential(layers, name="cnn")


def builder(name: str, input_shape, num_classes):
    """A zero-argument ``build_model`` for :func:`tflbayes.fit`."""
    check_choice("arch", name, ARCHITECTURES)
    fn = {"mlp": mlp, "cnn": cnn}[name]
    return lambda: fn(input_shape, num_classes)
