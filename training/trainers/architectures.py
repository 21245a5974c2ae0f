"""Model architectures for the chest X-ray classifier.

Contract shared by every builder:

* input: float32 ``(H, W, C)`` in [0, 1], exactly what
  ``classifier.imaging.preprocess`` returns (C is 1 or 3);
* output: LOGITS from a Dense layer named ``"logits"`` (no softmax: the inference
  pipeline applies a temperature-scaled softmax, and the loss uses ``from_logits``);
* ``gradcam_layer(model)`` names the last spatial (4-D) layer for Grad-CAM.

Only built-in Keras layers are used so that ``model.keras`` loads in the inference
process without importing this module (no custom-object registry to keep in sync).
TensorFlow/Keras are imported inside functions: importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Layers this module (and training.trainers.adversarial's source head) adds around a
# backbone; everything else in a backbone model belongs to the backbone (used by ``unfreeze``).
HEAD_LAYER_NAMES = frozenset(
    {"image", "to_rgb", "backbone_scale", "backbone_norm", "head_pool", "head_dropout", "logits"}
    | {"source_reversal", "source_hidden", "source_logits"}
)
GRADCAM_LAYER_NAME = "gradcam_target"

# name -> (keras.applications attribute, input convention, minimum input size).
# Conventions follow each family's ``preprocess_input``: "tf" = [-1, 1], "caffe" = 0-255
# minus ImageNet BGR means, "torch" = ImageNet mean/std, "raw255" = 0-255 (the model
# rescales itself, as EfficientNet does).
_BACKBONES: dict[str, tuple[str, str, int]] = {
    "vgg16": ("VGG16", "caffe", 32),
    "xception": ("Xception", "tf", 71),
    "inception_resnet_v2": ("InceptionResNetV2", "tf", 75),
    "mobilenet_v2": ("MobileNetV2", "tf", 32),
    "densenet121": ("DenseNet121", "torch", 32),
    **{f"efficientnet_b{i}": (f"EfficientNetB{i}", "raw255", 32) for i in range(8)},
}
_OWN = ("s0_cnn", "regularised_cnn", "cxr_net")
# EfficientNet-Lite, built here (training.trainers.efficientnet_lite) because Keras has no
# Lite models; "imagenet" weights are the checkpoint converted by ``convert_pretrained``.
_LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
ARCHITECTURES: tuple[str, ...] = _OWN + _LITE + tuple(_BACKBONES)


def build_model(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | None = None,
    allow_download: bool = False,
    dropout: float = 0.3,
    freeze_backbone: bool = True,
) -> Any:
    """Build an uncompiled ``keras.Model`` that maps [0, 1] images to logits.

    ``weights`` is None (random init), a local file path (a ``.weights.h5`` for our own
    models, a no-top ``.h5`` for backbones), or ``"imagenet"`` which is accepted only
    with ``allow_download=True`` (the training machines are offline).
    ``freeze_backbone`` applies to keras.applications models only.
    Raises ValueError for an unknown name, a too-small input or disallowed weights.
    """
    if name in _LITE:
        return _build_lite(name, input_shape, num_classes, weights, dropout, freeze_backbone)
    _check_weights(weights, allow_download)
    if name in _BACKBONES:
        return _build_backbone(name, input_shape, num_classes, weights, dropout, freeze_backbone)
    builders: dict[str, Callable[..., Any]] = {
        "s0_cnn": _build_s0_cnn,
        "regularised_cnn": _build_regularised_cnn,
        "cxr_net": _build_cxr_net,
    }
    if name not in builders:
        raise ValueError(f"unknown architecture {name!r}; choose one of: " + ", ".join(ARCHITECTURES))
    model = builders[name](input_shape, num_classes, dropout)
    if weights is not None:
        model.load_weights(weights)
    return model


def _check_weights(weights: str | None, allow_download: bool) -> None:
    from pathlib import Path

    if weights is None:
        return
    if weights == "imagenet":
        if not allow_download:
            raise ValueError(
                "weights='imagenet' needs allow_download=True; pass a local weights file path on offline machines"
            )
        return
    if not Path(weights).is_file():
        raise ValueError(f"weights file not found: {weights}")


def _build_s0_cnn(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> Any:
    """The pediatric source system: three conv/pool stages (16/32/64) + dense 128."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"conv{i + 1}" if i < 2 else GRADCAM_LAYER_NAME
        )(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="s0_cnn")


def _build_regularised_cnn(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> Any:
    """A plain VGG-style CNN with batch norm, spatial dropout and global pooling."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate((32, 64, 128, 256)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}a")(x)
        x = layers.BatchNormalization(name=f"bn{i}a")(x)
        x = layers.Activation("relu", name=GRADCAM_LAYER_NAME if i == 3 else f"relu{i}a")(x)
        if i < 3:
            x = layers.MaxPooling2D(name=f"pool{i}")(x)
            x = layers.SpatialDropout2D(dropout / 3, name=f"sdrop{i}")(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dense(128, activation="relu", name="fc")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="regularised_cnn")


def _res_block(x: Any, filters: int, stride: int, name: str) -> Any:
    """Residual block of two separable 3x3 convs (cheap on CPU, MobileNet-style)."""
    from keras import layers

    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.SeparableConv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_sep1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _build_cxr_net(input_shape: tuple[int, int, int], num_classes: int, dropout: float) -> Any:
    """Compact residual separable-conv CNN; the recommended CPU default.

    A dense strided stem downsamples 4x early because most CPU time is spent on the
    largest feature maps; the last stage stays at 1/16 resolution so Grad-CAM maps
    are 14x14 at 224 px rather than 7x7.  ~0.3 M parameters: small enough not to
    memorise a few thousand images, and it trains from scratch (no ImageNet offline).
    """
    import keras
    from keras import layers

    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    stages = ((32, 2, 1), (64, 2, 2), (128, 2, 2), (192, 1, 2))  # filters, stride, blocks
    for s, (filters, stride, blocks) in enumerate(stages):
        for b in range(blocks):
            x = _res_block(x, filters, stride if b == 0 else 1, f"s{s + 1}b{b + 1}")
    x = layers.Conv2D(256, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(name="top_bn")(x)
    x = layers.ReLU(name=GRADCAM_LAYER_NAME)(x)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="cxr_net")


def _input_adapter(x: Any, convention: str) -> Any:
    """Map [0, 1] input to the range the ImageNet backbone was trained on."""
    from keras import layers

    if convention == "tf":
        return layers.Rescaling(2.0, offset=-1.0, name="backbone_scale")(x)
    x = layers.Rescaling(255.0, name="backbone_scale")(x)
    if convention == "caffe":  # greyscale replicated, so the BGR order is irrelevant
        return layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0] * 3, name="backbone_norm")(x)
    if convention == "torch":
        mean = [0.485 * 255, 0.456 * 255, 0.406 * 255]
        var = [(s * 255) ** 2 for s in (0.229, 0.224, 0.225)]
        return layers.Normalization(mean=mean, variance=var, name="backbone_norm")(x)
    return x  # raw255


def _build_backbone(
    name: str, input_shape: tuple[int, int, int], num_classes: int, weights: str | None, dropout: float, freeze: bool
) -> Any:
    """keras.applications backbone, inlined (not nested) so Grad-CAM can reach its layers."""
    import keras
    from keras import layers

    attr, convention, min_size = _BACKBONES[name]
    if min(input_shape[:2]) < min_size:
        raise ValueError(f"{name} needs an input of at least {min_size}x{min_size}")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="to_rgb")([inputs, inputs, inputs])
    x = _input_adapter(x, convention)
    base = getattr(keras.applications, attr)(include_top=False, weights=weights, input_tensor=x)
    for layer in base.layers:
        layer.trainable = not freeze
    y = layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    y = layers.Dropout(dropout, name="head_dropout")(y)
    outputs = layers.Dense(num_classes, name="logits")(y)
    return keras.Model(inputs, outputs, name=name)


def pretrained_path(name: str) -> Any:
    """Where ``convert_pretrained`` writes (and training reads) ``name``'s ImageNet weights:
    ``$CXR_PRETRAINED_DIR`` or the copy shipped in ``training/pretrained/``."""
    import os
    from pathlib import Path

    from training.trainers.pretrained import default_path

    directory = os.environ.get("CXR_PRETRAINED_DIR", "").strip() or Path(__file__).resolve().parents[1] / "pretrained"
    return default_path(name, Path(directory))


def _build_lite(
    name: str, input_shape: tuple[int, int, int], num_classes: int, weights: str | None, dropout: float, freeze: bool
) -> Any:
    """EfficientNet-Lite on a [0, 1] image; greyscale goes straight into a stem whose
    ImageNet kernel is summed over RGB (the same output as a replicated grey image)."""
    from pathlib import Path

    import keras
    from keras import layers

    from training.trainers.efficientnet_lite import INPUT_MEAN, INPUT_STD, efficientnet_lite_features
    from training.trainers.pretrained import load_into

    if min(input_shape[:2]) < 32:
        raise ValueError(f"{name} needs an input of at least 32x32")
    path = Path(pretrained_path(name)) if weights == "imagenet" else Path(weights) if weights else None
    if path is not None and not path.is_file():
        raise ValueError(
            f"ImageNet weights for {name} not found at {path}; create them with `python manage.py convert_pretrained`"
        )
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(255.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="backbone_scale")(inputs)
    x = efficientnet_lite_features(x, name, feature_name=GRADCAM_LAYER_NAME)
    y = layers.GlobalAveragePooling2D(name="head_pool")(x)
    y = layers.Dropout(dropout, name="head_dropout")(y)
    outputs = layers.Dense(num_classes, name="logits")(y)
    model = keras.Model(inputs, outputs, name=name)
    if path is not None:
        load_into(model, path, grey=input_shape[-1] == 1)
    for layer in backbone_layers(model):
        layer.trainable = not freeze
    return model


def backbone_layers(model: Any) -> list[Any]:
    """Layers of an inlined pretrained backbone (empty for our own models)."""
    if model.name not in _BACKBONES and model.name not in _LITE:
        return []
    return [layer for layer in model.layers if layer.name not in HEAD_LAYER_NAMES]


def unfreeze(model: Any, n_layers: int) -> int:
    """Make the last ``n_layers`` backbone layers trainable; returns how many changed.

    BatchNormalization layers stay frozen: fine-tuning their statistics on a few
    thousand images is the usual cause of a collapse after unfreezing.
    The caller must re-compile the model afterwards for the change to take effect.
    """
    import keras

    changed = 0
    for layer in backbone_layers(model)[-n_layers:] if n_layers > 0 else []:
        if isinstance(layer, keras.layers.BatchNormalization) or layer.trainable:
            continue
        layer.trainable = True
        changed += 1
    return changed


def gradcam_layer(model: Any) -> str:
    """Name of the layer whose activations Grad-CAM should use.

    Our own models name it ``gradcam_target``; for backbones it is the last layer with
    a 4-D output (the final conv stage before global pooling).
    """
    names = {layer.name for layer in model.layers}
    if GRADCAM_LAYER_NAME in names:
        return GRADCAM_LAYER_NAME
    for layer in reversed(model.layers):
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no 4-D layer for Grad-CAM")
