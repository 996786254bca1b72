"""Built-in architectures: the CLI's ``--arch`` and small versions of what edge engineers ship.

``mlp`` and ``cnn`` are the small models for the bundled data. The others are tiny but faithful
versions of the architectures deployed on phones, microcontrollers and Edge TPUs, each a flat
functional (or Sequential) Keras model that outputs logits:

==================  =====================================================================
``mobilenet_v2``    ``keras.applications.MobileNetV2`` (α = 0.35, ``weights=None``): inverted
                    residual blocks (expand 1×1, depthwise 3×3, project 1×1, residual ``Add``),
                    BatchNormalization, ReLU6, global average pooling
``mobilenet_v3``    ``keras.applications.MobileNetV3Small(minimalistic=True)``
``resnet``          Conv-BN-ReLU stem and two residual blocks with ``Add`` (one projection
                    shortcut), global average pooling
``ds_cnn``          depthwise-separable CNN for keyword spotting (DepthwiseConv2D + 1×1 Conv2D
                    + BatchNormalization), as in Zhang et al. 2017 "Hello Edge"
``conv1d``          1-D CNN for sensor windows (Conv1D, MaxPooling1D, GlobalAveragePooling1D)
``gru``             GRU classifier over a sequence; ``lstm`` the same with an LSTM
``ln_mlp``          MLP with BatchNormalization and LayerNormalization
==================  =====================================================================

Image models resize inputs smaller than 32×32 (``keras.applications`` needs at least that);
sequence models read an image ``[H, W, C]`` as ``H`` time steps of ``W·C`` features, so every
builder takes any bundled data set.
"""
from __future__ import annotations

import math

from tflbayes._checks import check_choice
from tflbayes.errors import InvalidInputError

__all__ = ["ARCHITECTURES", "mlp", "cnn", "mobilenet_v2", "mobilenet_v3", "resnet", "ds_cnn", "conv1d",
           "gru", "lstm", "ln_mlp", "builder"]

ARCHITECTURES = ("mlp", "cnn", "mobilenet_v2", "mobilenet_v3", "resnet", "ds_cnn", "conv1d", "gru", "lstm",
                 "ln_mlp")


def _k():
    """Keras and its layers, imported on first use: the CLI lists ARCHITECTURES without TensorFlow."""
    from tflbayes._keras import keras

    return keras, keras.layers


def mlp(input_shape, num_classes, hidden=(128, 64)):
    """Flatten -> Dense(relu) x len(hidden) -> Dense(num_classes) logits."""
    keras, L = _k()
    layers = [keras.Input(tuple(input_shape)), L.Flatten()]
    layers += [L.Dense(h, activation="relu") for h in hidden]
    layers.append(L.Dense(num_classes, name="logits"))
    return keras.Sequential(layers, name="mlp")


def _image_shape(input_shape, who):
    if len(input_shape) != 3:
        raise InvalidInputError(f"The {who} needs image inputs [H, W, C]. Received input_shape={tuple(input_shape)}")
    return tuple(int(d) for d in input_shape)


def cnn(input_shape, num_classes, filters=(16, 32), dense=64):
    """A small CNN: [Conv3x3(relu) -> MaxPool2 (when the map is >= 8 px)] x 2 -> Dense -> logits."""
    keras, L = _k()
    _image_shape(input_shape, "CNN")
    layers = [keras.Input(tuple(input_shape))]
    size = min(input_shape[0], input_shape[1])
    for f in filters:
        layers.append(L.Conv2D(f, 3, padding="same", activation="relu"))
        if size >= 8:
            layers.append(L.MaxPooling2D(2))
            size //= 2
    layers += [L.Flatten(), L.Dense(dense, activation="relu"), L.Dense(num_classes, name="logits")]
    return keras.Sequential(layers, name="cnn")


def _image_input(input_shape, who, min_size=32):
    """An Input and, for maps smaller than ``min_size``, a Resizing up to it (plus 3 channels)."""
    keras, L = _k()
    h, w, c = _image_shape(input_shape, who)
    inp = keras.Input((h, w, c), name="image")
    x = inp
    if min(h, w) < min_size:
        scale = math.ceil(min_size / min(h, w))
        x = L.Resizing(h * scale, w * scale, interpolation="bilinear", name="upsample")(x)
    if c != 3:
        x = L.Conv2D(3, 1, name="to_rgb")(x)  # a learned 1x1 mix: keras.applications expects 3 channels
    return inp, x


def mobilenet_v2(input_shape, num_classes, alpha=0.35):
    """MobileNetV2 (Sandler et al. 2018) from ``keras.applications``, untrained, flat, logits out."""
    keras, L = _k()
    inp, x = _image_input(input_shape, "MobileNetV2")
    base = keras.applications.MobileNetV2(input_tensor=x, alpha=alpha, weights=None, include_top=False,
                                          pooling="avg")
    out = L.Dense(num_classes, name="logits")(base.output)
    return keras.Model(inp, out, name="mobilenet_v2")


def mobilenet_v3(input_shape, num_classes):
    """MobileNetV3-Small, minimalistic (Howard et al. 2019), untrained, flat, logits out."""
    keras, L = _k()
    inp, x = _image_input(input_shape, "MobileNetV3")
    base = keras.applications.MobileNetV3Small(input_tensor=x, minimalistic=True, weights=None,
                                               include_top=False, pooling="avg", alpha=0.75)
    out = L.Dense(num_classes, name="logits")(base.output)
    return keras.Model(inp, out, name="mobilenet_v3")


def _conv_bn(x, filters, kernel, strides, name, activation=True):
    keras, L = _k()
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if activation else x


def resnet(input_shape, num_classes, filters=(16, 32)):
    """A small ResNet (He et al. 2016): stem, one identity and one projection residual block, GAP."""
    keras, L = _k()
    h, w, c = _image_shape(input_shape, "ResNet")
    inp = keras.Input((h, w, c), name="image")
    x = _conv_bn(inp, filters[0], 3, 1, "stem")
    y = _conv_bn(x, filters[0], 3, 1, "block1a")
    y = _conv_bn(y, filters[0], 3, 1, "block1b", activation=False)
    x = L.ReLU(name="block1_out")(L.Add(name="block1_add")([x, y]))
    y = _conv_bn(x, filters[1], 3, 2, "block2a")
    y = _conv_bn(y, filters[1], 3, 1, "block2b", activation=False)
    shortcut = _conv_bn(x, filters[1], 1, 2, "block2_proj", activation=False)
    x = L.ReLU(name="block2_out")(L.Add(name="block2_add")([shortcut, y]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="resnet")


def ds_cnn(input_shape, num_classes, filters=32, blocks=2):
    """DS-CNN keyword spotting (Zhang et al. 2017): conv stem, depthwise-separable blocks with BN."""
    keras, L = _k()
    h, w, c = _image_shape(input_shape, "DS-CNN")
    inp = keras.Input((h, w, c), name="features")
    x = _conv_bn(inp, filters, 3, 1, "stem")
    for i in range(blocks):
        x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"ds{i}_dw")(x)
        x = L.BatchNormalization(name=f"ds{i}_dw_bn")(x)
        x = L.ReLU(name=f"ds{i}_dw_relu")(x)
        x = _conv_bn(x, filters, 1, 1, f"ds{i}_pw")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="ds_cnn")


def _sequence_input(input_shape, who):
    """An Input and the [T, F] sequence view of it (an image [H, W, C] is H steps of W·C features)."""
    keras, L = _k()
    shape = tuple(int(d) for d in input_shape)
    if len(shape) not in (2, 3):
        raise InvalidInputError(f"The {who} needs sequence inputs [T, F] or images [H, W, C]. "
                                f"Received input_shape={shape}")
    inp = keras.Input(shape, name="window")
    x = inp if len(shape) == 2 else L.Reshape((shape[0], shape[1] * shape[2]), name="as_sequence")(inp)
    return inp, x


def conv1d(input_shape, num_classes, filters=(16, 32)):
    """1-D CNN for sensor windows: [Conv1D(relu) -> MaxPooling1D] -> Conv1D -> GAP -> logits."""
    keras, L = _k()
    inp, x = _sequence_input(input_shape, "1-D CNN")
    x = L.Conv1D(filters[0], 3, padding="same", activation="relu", name="conv1")(x)
    x = L.MaxPooling1D(2, name="pool1")(x)
    x = L.Conv1D(filters[1], 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="conv1d")


def _recurrent(kind: str, input_shape, num_classes, units: int):
    """``kind`` ("GRU" or "LSTM") with ``units`` over the sequence, its last state -> logits."""
    keras, L = _k()
    inp, x = _sequence_input(input_shape, f"{kind} classifier")
    x = getattr(L, kind)(units, name=kind.lower())(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name=kind.lower())


def gru(input_shape, num_classes, units=32):
    """GRU(units) over the sequence, its last state -> logits."""
    return _recurrent("GRU", input_shape, num_classes, units)


def lstm(input_shape, num_classes, units=32):
    """LSTM(units) over the sequence, its last state -> logits."""
    return _recurrent("LSTM", input_shape, num_classes, units)


def ln_mlp(input_shape, num_classes, hidden=(64, 32)):
    """Flatten -> [Dense -> BatchNormalization | LayerNormalization -> ReLU] -> logits."""
    keras, L = _k()
    inp = keras.Input(tuple(int(d) for d in input_shape), name="x")
    x = L.Flatten(name="flat")(inp)
    for i, units in enumerate(hidden):
        x = L.Dense(units, name=f"dense{i}")(x)
        x = (L.BatchNormalization(name=f"bn{i}") if i % 2 == 0 else L.LayerNormalization(name=f"ln{i}"))(x)
        x = L.ReLU(name=f"relu{i}")(x)
    out = L.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, out, name="ln_mlp")


_BUILDERS = {"mlp": mlp, "cnn": cnn, "mobilenet_v2": mobilenet_v2, "mobilenet_v3": mobilenet_v3,
             "resnet": resnet, "ds_cnn": ds_cnn, "conv1d": conv1d, "gru": gru, "lstm": lstm, "ln_mlp": ln_mlp}


def builder(name: str, input_shape, num_classes):
    """A zero-argument ``build_model`` for :func:`tflbayes.fit`."""
    check_choice("arch", name, ARCHITECTURES)
    fn = _BUILDERS[name]
    return lambda: fn(input_shape, num_classes)
