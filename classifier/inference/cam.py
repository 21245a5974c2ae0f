"""Grad-CAM without a gradient pass, for networks whose head is pooled and dense.

When the Grad-CAM feature map A (N, h, w, K) feeds global average pooling followed only
by dense layers (dropout is the identity at inference), the gradient of a class logit
y_c with respect to A has a closed form:

    dy_c / dA_k(i, j) = g_k / (h * w),   g = dy_c / d pooled,

where g back-propagates the one-hot class vector through the dense layers (ReLU gates
taken from the forward pass).  Grad-CAM's channel weights are the spatial mean of that
gradient, alpha_k = g_k / (h * w), so the map relu(sum_k alpha_k A_k) is exactly the
map a GradientTape would give, for the cost of one small matrix product per image.
The feature map comes out of the same forward pass that produced the probabilities,
so the heatmap explains exactly the model that was served.

``PooledHead`` holds that head's weights; it is read either from the served TFLite
flatbuffer (``tflite_with_features``, no TensorFlow needed) or from a Keras model
(``PooledHead.from_keras``).  Any other head shape returns None and callers fall back
to the GradientTape implementation in ``classifier.inference.gradcam``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Logits recomputed from the exposed features must match the runtime's own logits this
# closely, or the head was misread and the closed form must not be used.
PARITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DenseLayer:
    """y = act(x @ weight + bias); weight is (inputs, outputs)."""

    weight: np.ndarray
    bias: np.ndarray
    relu: bool


@dataclass(frozen=True)
class PooledHead:
    """Global average pooling followed by dense layers; the last layer gives logits."""

    layers: tuple[DenseLayer, ...]

    def _forward(self, pooled: np.ndarray) -> list[np.ndarray]:
        """Pre-activation values of each layer, for the ReLU gates of the backward pass."""
        pre, x = [], pooled.astype(np.float64)
        for layer in self.layers:
            z = x @ layer.weight + layer.bias
            pre.append(z)
            x = np.maximum(z, 0.0) if layer.relu else z
        return pre

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits (N, classes) from the feature map (N, h, w, K)."""
        z = self._forward(features.mean(axis=(1, 2)))[-1]
        return np.maximum(z, 0.0) if self.layers[-1].relu else z

    def cam(self, features: np.ndarray, class_indices: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Grad-CAM maps (N, H, W) in [0, 1] for ``class_indices`` (N,), resized to ``size``.

        Same convention as ``gradcam.gradcam_batch``: ReLU, bilinear resize (half-pixel
        centres), divided by the map's peak; all zeros where nothing supports the class.
        """
        import cv2

        n, h, w, _ = features.shape
        pre = self._forward(features.mean(axis=(1, 2)))
        grad = np.zeros_like(pre[-1])
        grad[np.arange(n), class_indices] = 1.0
        for layer, z in zip(reversed(self.layers), reversed(pre), strict=False):
            if layer.relu:
                grad = grad * (z > 0)
            grad = grad @ layer.weight.T
        alpha = grad / (h * w)  # (N, K)
        heat = np.maximum(np.einsum("nhwk,nk->nhw", features, alpha), 0.0).astype(np.float32)
        out = np.zeros((n, *size), np.float32)
        for i in range(n):
            # cv2's INTER_LINEAR uses half-pixel centres, like tf.image.resize("bilinear").
            resized = cv2.resize(heat[i], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
            peak = float(resized.max())
            if peak > 0:
                out[i] = resized / peak
        return out

    def matches(self, features: np.ndarray, logits: np.ndarray) -> bool:
        """True when this head turns ``features`` into ``logits`` (the parity guard)."""
        expected = np.asarray(logits, np.float64)
        scale = max(1.0, float(np.abs(expected).max()))
        return bool(np.abs(self.logits(features) - expected).max() <= PARITY_TOLERANCE * scale)

    @classmethod
    def from_keras(cls, model: Any, layer_name: str) -> PooledHead | None:
        """The head after ``layer_name`` if it is GAP -> (Dropout | Dense)*, else None."""
        import keras

        index = [layer.name for layer in model.layers].index(layer_name)
        tail = model.layers[index + 1 :]
        if not tail or not isinstance(tail[0], keras.layers.GlobalAveragePooling2D):
            return None
        previous = model.layers[index].output
        dense: list[DenseLayer] = []
        for layer in tail:
            if layer.input is not previous:  # not a plain chain (branch, skip, ...)
                return None
            previous = layer.output
            if layer is tail[0] or isinstance(layer, keras.layers.Dropout):
                continue
            if not isinstance(layer, keras.layers.Dense):
                return None
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation.get("config", activation)
            if activation not in ("linear", "relu"):
                return None
            weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
            bias = weights[1] if layer.use_bias else np.zeros(weights[0].shape[1])
            dense.append(DenseLayer(weights[0], bias, activation == "relu"))
        if previous is not model.output or not dense:
            return None
        return cls(tuple(dense))


def tflite_with_features(model_bytes: bytes) -> tuple[bytes, PooledHead] | None:
    """The same TFLite model with its Grad-CAM feature map as a second output, and its head.

    Looks for MEAN over the spatial axes of a 4-D tensor followed only by FULLY_CONNECTED
    ops (fused activation NONE or RELU) ending at the model's single output, with float32
    weights.  Returns None for any other graph.  The operators and weights are untouched:
    only the subgraph's output list grows, so the logits are bit-for-bit those of the
    original file (tests check this).
    """
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.convert_bytearray_to_object(bytearray(model_bytes))
    if len(model.subgraphs) != 1 or len(model.subgraphs[0].outputs) != 1:
        return None
    graph = model.subgraphs[0]
    ops = fb.schema_fb.BuiltinOperator
    act = fb.schema_fb.ActivationFunctionType
    codes = [fb.get_builtin_code_from_operator_code(code) for code in model.operatorCodes]
    producer = {int(out): op for op in graph.operators for out in op.outputs}

    def constant(tensor_index: int) -> np.ndarray | None:
        tensor = graph.tensors[tensor_index]
        data = model.buffers[tensor.buffer].data
        if tensor.type != fb.schema_fb.TensorType.FLOAT32 or data is None or len(data) == 0:
            return None
        return np.frombuffer(bytes(data), np.float32).reshape(tensor.shape).astype(np.float64)

    # Walk back from the output through FULLY_CONNECTED ops to the MEAN.
    dense: list[DenseLayer] = []
    current = int(graph.outputs[0])
    while True:
        op = producer.get(current)
        if op is None:
            return None
        code = codes[op.opcodeIndex]
        if code == ops.FULLY_CONNECTED:
            options = op.builtinOptions
            if options is None or options.fusedActivationFunction not in (act.NONE, act.RELU):
                return None
            weight = constant(int(op.inputs[1]))
            bias = constant(int(op.inputs[2])) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            if weight is None or weight.ndim != 2:
                return None
            dense.insert(
                0,
                DenseLayer(
                    weight.T.copy(),
                    bias if bias is not None else np.zeros(weight.shape[0]),
                    options.fusedActivationFunction == act.RELU,
                ),
            )
            current = int(op.inputs[0])
            continue
        if code != ops.MEAN or not dense:
            return None
        features = int(op.inputs[0])
        axes_tensor = graph.tensors[int(op.inputs[1])]
        axes_data = model.buffers[axes_tensor.buffer].data
        axes = sorted(np.frombuffer(bytes(axes_data), np.int32).tolist()) if axes_data is not None else []
        if len(graph.tensors[features].shape) != 4 or axes != [1, 2]:
            return None
        break
    graph.outputs = np.append(np.asarray(graph.outputs, np.int32), np.int32(features))
    return bytes(fb.convert_object_to_bytearray(model)), PooledHead(tuple(dense))
