"""A run or a committee as an ONNX model: pixels in, class probabilities out, for ONNX Runtime.

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

as `mnist-jax predict` computes them (`serving.inference.probabilities`). A committee
(`records.committee`) is one graph: each member's nodes as above under its own names
(`members.0.layers.0.w`, ...), then a `Mean` of the members' probabilities. The input
standardisation (or scaling) is folded into the first layer (`standardize.fold`, as `theta
export` folds it), so the graph takes raw grey levels and needs no preprocessing node. The
weights keep the model's float type (float64 models compute and answer in double). The
config is stored as JSON in the model's metadata (`mnist_jax.config`; a committee's rule and
members' configs under `mnist_jax.committee`). Opset 17 and IR
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
from mnist_jax.records import committee

OPSET = 17  # Gemm, Softmax over the last axis, ReduceSum's axes as an input (13+)
IR_VERSION = 8  # the IR of opset 17, which ONNX Runtime reads from 1.13 on
INPUT, OUTPUT = "pixels", "probabilities"
ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
Log = Callable[[str], None]


def require_onnx() -> Any:
    """Return the onnx package, or fail in one line naming the extra."""
    return interchange.require("onnx", "onnx", "ONNX export")


def build_model(model: committee.Committee) -> Any:
    """Build the ONNX model of a run or a committee: raw pixels (N, input_size) ->
    probabilities (N, C).

    A run's graph is its layers (`member_nodes`, weights `layers.0.w`, ...). A committee's
    holds each member's layers under its own names (`members.0.layers.0.w`, ...), each with
    its own standardisation folded in, and a `Mean` of their probabilities (in double when a
    member is float64).

    Args:
        model: what `committee.load` read; the params are not folded.

    Returns:
        An `onnx.ModelProto` that passes `onnx.checker.check_model`.
    """
    onnx = require_onnx()
    from onnx import TensorProto, helper

    x64 = any(np.dtype(m.config.dtype) == np.float64 for m in model.members)
    elem = TensorProto.DOUBLE if x64 else TensorProto.FLOAT
    nodes, weights, outputs = [], [], []
    for k, member in enumerate(model.members):
        prefix = f"members.{k}." if model.is_committee else ""
        out = member_nodes(member.params, member.config, prefix, nodes, weights)
        if x64 and member.config.dtype != "float64":
            nodes.append(helper.make_node("Cast", [out], [f"{out}.double"], to=TensorProto.DOUBLE))
            out = f"{out}.double"
        outputs.append(out)
    if model.is_committee:
        nodes.append(helper.make_node("Mean", outputs, [OUTPUT], name="committee"))
    sizes = architecture.layer_sizes(model.config)
    graph = helper.make_graph(
        nodes,
        "mnist_jax_committee" if model.is_committee else "mnist_jax_mlp",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT, elem, ["N", sizes[-1]])],
        initializer=weights,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="mnist-jax",
        doc_string=_describe(model, sizes),
    )
    if model.is_committee:
        configs = [m.config.to_dict() for m in model.members]
        saved = {"mnist_jax.committee": json.dumps({"rule": model.rule, "configs": configs})}
    else:
        saved = {"mnist_jax.config": json.dumps(model.config.to_dict())}
    helper.set_model_props(onnx_model, saved)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def member_nodes(
    params: list[dict[str, Any]], config: Config, prefix: str, nodes: list, weights: list
) -> str:
    """Append one MLP's nodes and weights (names under `prefix`); return its output's name.

    It reads INPUT, folds the config's standardisation into its first layer, and ends in the
    probabilities (OUTPUT for a run, `<prefix>probabilities` in a committee) in the config's
    float type.
    """
    from onnx import TensorProto, helper, numpy_helper

    dtype = np.dtype(config.dtype)
    layers = standardize.fold(params, config, takes=1.0)  # float64: rounded once, below
    x = INPUT
    if dtype == np.float64:
        nodes.append(helper.make_node("Cast", [x], [f"{prefix}inputs"], to=TensorProto.DOUBLE))
        x = f"{prefix}inputs"
    for i, layer in enumerate(layers):
        w, b = f"{prefix}layers.{i}.w", f"{prefix}layers.{i}.b"
        weights += [
            numpy_helper.from_array(np.asarray(layer["w"], dtype), w),
            numpy_helper.from_array(np.asarray(layer["b"], dtype), b),
        ]
        last = i == len(layers) - 1
        z = f"{prefix}logits" if last else f"{prefix}layers.{i}.z"
        nodes.append(helper.make_node("Gemm", [x, w, b], [z], name=f"{prefix}layer{i}"))
        if not last:
            x = f"{prefix}layers.{i}.a"
            nodes.append(helper.make_node(ACTIVATIONS[config.activation], [z], [x]))
    out = f"{prefix}{OUTPUT}" if prefix else OUTPUT
    nodes += _probabilities(config.output, prefix, out, weights)
    return out


def _probabilities(output: str, prefix: str, out: str, weights: list[Any]) -> list[Any]:
    """The nodes from "<prefix>logits" to `out`: softmax, or sigmoids divided by their sum."""
    from onnx import helper, numpy_helper

    logits = f"{prefix}logits"
    if output == "softmax":
        return [helper.make_node("Softmax", [logits], [out], axis=-1)]
    axis = f"{prefix}last_axis"
    weights.append(numpy_helper.from_array(np.array([-1], np.int64), axis))
    return [
        helper.make_node("Sigmoid", [logits], [f"{prefix}scores"]),
        helper.make_node("ReduceSum", [f"{prefix}scores", axis], [f"{prefix}total"], keepdims=1),
        helper.make_node("Div", [f"{prefix}scores", f"{prefix}total"], [out]),
    ]


def _describe(model: committee.Committee, sizes: tuple[int, ...]) -> str:
    """The model's doc string: what goes in and what comes out."""
    io = f"grey levels 0..255 (N, {sizes[0]}) float32 in, probabilities (N, {sizes[-1]}) out"
    if model.is_committee:
        return f"committee of {len(model.members)} MLPs, their probabilities averaged: {io}"
    config = model.config
    return f"{'-'.join(map(str, sizes))} {config.activation} MLP, {config.output} output: {io}"


def export_onnx(run: str | Path, out: str | Path, log: Log = print) -> Path:
    """Write a run or a committee as an ONNX model file, atomically; return its path.

    Args:
        run: a checkpoint.npz, the run folder holding it, or a committee folder.
        out: the file to write (replaced whole when it exists).
        log: told how the input was folded into the first layer.
    """
    require_onnx()  # before reading the checkpoint: the missing package is the first news
    model = committee.load(run)
    path = interchange.write_file(Path(out), build_model(model).SerializeToString())
    if model.is_committee:
        log(
            f"note: the graph takes grey levels 0..255 as float32; each of the "
            f"{len(model.members)} members' input standardisation is folded into its "
            "members.K.layers.0, and a Mean node averages their probabilities"
        )
        return path
    shift, factor = standardize.affine(model.config)
    inputs = f"(pixels - {shift:.6g}) x {factor:.6g}" if shift else f"pixels x {factor:.6g}"
    log(f"note: the graph takes grey levels 0..255 as float32; {inputs} is folded into layers.0")
    return path
