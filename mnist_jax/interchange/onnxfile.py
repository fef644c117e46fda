"""A checkpoint as an ONNX model: pixels in, class probabilities out, for ONNX Runtime.

The graph is built node by node with `onnx.helper` (a converter from JAX's ecosystem,
jax2onnx, brings Flax, Equinox, Orbax and the Hugging Face hub along, names its weights
`const_0`, ..., and gives every layer a Gemm with a zero bias followed by an Add); here each
layer is one `Gemm` (x @ w + b) whose weights are named as in the params pytree and in
safetensors files (`layers.0.w`, `layers.0.b`, ...):

    pixels (N, input_size) float32, grey levels 0..255 as in the training data
      -> [Cast to double, for a float64 model]
      -> Gemm(layers.0.w, layers.0.b) -> Relu | Sigmoid | Tanh      one per hidden layer
      -> Gemm(layers.L.w, layers.L.b)                               logits (N, classes)
      -> Softmax, or Sigmoid then each row divided by its sum       probabilities (N, classes)

as `mnist-jax predict` computes them (`serving.inference.probabilities`). The input
standardisation (or scaling) is folded into the first layer (`standardize.fold`, as `theta
export` folds it), so the graph takes raw grey levels and needs no preprocessing node. The
weights keep the model's float type (float64 models compute and answer in double). The
config is stored as JSON in the model's metadata (`mnist_jax.config`). Opset 17 and IR
version 8 are what ONNX Runtime reads from 1.13 on (the tests run 1.20 and the newest).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax import architecture, interchange
from mnist_jax.config import Config
from mnist_jax.data import standardize
from mnist_jax.records import checkpoint

OPSET = 17  # Gemm, Softmax over the last axis, ReduceSum's axes as an input (13+)
IR_VERSION = 8  # the IR of opset 17, which ONNX Runtime reads from 1.13 on
INPUT, OUTPUT = "pixels", "probabilities"
ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
Log = Callable[[str], None]


def require_onnx() -> Any:
    """Return the onnx package, or fail in one line naming the extra."""
    return interchange.require("onnx", "onnx", "ONNX export")


def build_model(params: list[dict[str, Any]], config: Config) -> Any:
    """Build the ONNX model of an MLP: raw pixels (N, input_size) -> probabilities (N, C).

    Args:
        params: the trained params [{"w": (in, out), "b": (out,)}], not folded.
        config: their config (activation, output, input normalisation, dtype).

    Returns:
        An `onnx.ModelProto` that passes `onnx.checker.check_model`.
    """
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    dtype = np.dtype(config.dtype)
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    layers = standardize.fold(params, config, takes=1.0)  # float64: rounded once, below
    sizes = architecture.layer_sizes(config)
    nodes, weights = [], []
    x = INPUT
    if elem == TensorProto.DOUBLE:
        nodes.append(helper.make_node("Cast", [x], ["inputs"], to=TensorProto.DOUBLE))
        x = "inputs"
    for i, layer in enumerate(layers):
        w, b = f"layers.{i}.w", f"layers.{i}.b"
        weights += [
            numpy_helper.from_array(np.asarray(layer["w"], dtype), w),
            numpy_helper.from_array(np.asarray(layer["b"], dtype), b),
        ]
        last = i == len(layers) - 1
        z = "logits" if last else f"layers.{i}.z"
        nodes.append(helper.make_node("Gemm", [x, w, b], [z], name=f"layer{i}"))
        if not last:
            x = f"layers.{i}.a"
            nodes.append(helper.make_node(ACTIVATIONS[config.activation], [z], [x]))
    nodes += _probabilities(config.output, helper, numpy_helper, weights)
    graph = helper.make_graph(
        nodes,
        "mnist_jax_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["N", sizes[-1]])],
        initializer=weights,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="mnist-jax",
        doc_string=(
            f"{'-'.join(map(str, sizes))} {config.activation} MLP, {config.output} output: "
            f"grey levels 0..255 (N, {sizes[0]}) float32 in, probabilities (N, {sizes[-1]}) out"
        ),
    )
    helper.set_model_props(model, {"mnist_jax.config": json.dumps(config.to_dict())})
    onnx.checker.check_model(model, full_check=True)
    return model


def _probabilities(output: str, helper: Any, numpy_helper: Any, weights: list[Any]) -> list[Any]:
    """The nodes from "logits" to the output: softmax, or sigmoids divided by their sum."""
    if output == "softmax":
        return [helper.make_node("Softmax", ["logits"], [OUTPUT], axis=-1)]
    weights.append(numpy_helper.from_array(np.array([-1], np.int64), "last_axis"))
    return [
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
        helper.make_node("ReduceSum", ["scores", "last_axis"], ["total"], keepdims=1),
        helper.make_node("Div", ["scores", "total"], [OUTPUT]),
    ]


def export_onnx(run: str | Path, out: str | Path, log: Log = print) -> Path:
    """Write a checkpoint as an ONNX model file, atomically; return its path.

    Args:
        run: a checkpoint.npz or the run folder holding it.
        out: the file to write (replaced whole when it exists).
        log: told how the input was folded into the first layer.
    """
    require_onnx()  # before reading the checkpoint: the missing package is the first news
    ckpt = checkpoint.load(run)
    model = build_model(ckpt.params, ckpt.config)
    path = interchange.write_file(Path(out), model.SerializeToString())
    shift, factor = standardize.affine(ckpt.config)
    inputs = f"(pixels - {shift:.6g}) x {factor:.6g}" if shift else f"pixels x {factor:.6g}"
    log(f"note: the graph takes grey levels 0..255 as float32; {inputs} is folded into layers.0")
    return path
