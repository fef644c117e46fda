"""`mnist-jax export --format onnx|safetensors` and `mnist-jax import`, each file checked by the
other side's own reader: ONNX's checker and ONNX Runtime, the safetensors library."""

import json
import struct
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import SMOKE, run_cli
from safetensors import safe_open

from mnist_jax import api
from mnist_jax.config import load_config
from mnist_jax.records import checkpoint
from tests.test_serve import post_canvas
from tests.trained_model import confident_digit, trained_smoke_model  # noqa: F401 (fixture)

# Other kinds of model than the shared smoke run (relu, softmax, float32, standardised inputs).
VARIANTS = {
    "sigmoid-float64": {"activation": "sigmoid", "output": "sigmoid", "dtype": "float64"},
    "tanh-scaled": {"activation": "tanh", "input_norm": "scale"},
}


@pytest.fixture(scope="module")
def variants(tmp_path_factory, smoke_model):
    """Run folders by name: the smoke run, and short runs of the VARIANTS on the sample."""
    runs = {"relu-softmax": smoke_model}
    for name, changes in VARIANTS.items():
        runs[name] = tmp_path_factory.mktemp(name) / "run"
        config = load_config(SMOKE, {"train_size": 2000, **changes})
        api.train(config, runs[name], log=lambda _: None)
    return runs


def onnx_probabilities(path, images: np.ndarray) -> np.ndarray:
    """Run an exported file in ONNX Runtime on uint8 images (N, 28, 28): (N, classes)."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = images.reshape(len(images), -1).astype(np.float32)
    return session.run(["probabilities"], {"pixels": pixels})[0]


def export(run, fmt, out):
    result = run_cli(["export", str(run), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    return result


def assert_runtime_agrees_with_eval(run, path):
    """ONNX Runtime on every test image of the run: eval's digits, probabilities within 1e-5."""
    evaluation = api.evaluate(run, log=lambda _: None)
    probs = onnx_probabilities(path, evaluation.images)
    np.testing.assert_array_equal(probs.argmax(axis=1), evaluation.probabilities.argmax(axis=1))
    np.testing.assert_allclose(probs, evaluation.probabilities, rtol=0, atol=1e-5)
    assert np.mean(probs.argmax(axis=1) == evaluation.labels) == evaluation.accuracy
    return evaluation


# --- ONNX


@pytest.mark.option("export", "--format")
@pytest.mark.parametrize("name", ["relu-softmax", *VARIANTS])
@pytest.mark.long
def test_onnx_runtime_gives_evals_digits_and_probabilities(variants, name, tmp_path):
    out = tmp_path / "model.onnx"
    result = export(variants[name], "onnx", out)
    assert "folded into layers.0" in result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    config = checkpoint.load(variants[name]).config
    ops = [node.op_type for node in model.graph.node]
    activation = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[config.activation]
    assert ops.count("Gemm") == 2 and ops.count(activation) >= 1
    assert ("Softmax" in ops) == (config.output == "softmax")
    names = {init.name for init in model.graph.initializer}
    assert {"layers.0.w", "layers.0.b", "layers.1.w", "layers.1.b"} <= names
    saved = json.loads({p.key: p.value for p in model.metadata_props}["mnist_jax.config"])
    assert saved == config.to_dict()
    evaluation = assert_runtime_agrees_with_eval(variants[name], out)
    assert evaluation.count == 2000  # the bundled sample's test images


@pytest.mark.long  # full MNIST: `make test-long`, after the main suite
def test_onnx_runtime_agrees_with_eval_on_all_10000_mnist_test_images(full_mnist, tmp_path):
    run, out = tmp_path / "run", tmp_path / "model.onnx"
    config = load_config(SMOKE, {"dataset": "mnist", "data_dir": str(full_mnist), "epochs": 1})
    api.train(config, run, log=lambda _: None)
    export(run, "onnx", out)
    evaluation = assert_runtime_agrees_with_eval(run, out)
    assert evaluation.count == 10_000 and evaluation.accuracy > 0.9


# --- safetensors


@pytest.mark.option("export", "--out")
@pytest.mark.option("import", "--out")
@pytest.mark.parametrize("name", ["relu-softmax", "sigmoid-float64"])
@pytest.mark.long
def test_safetensors_export_import_eval_gives_the_same_figures(variants, name, tmp_path):
    run, file, back = variants[name], tmp_path / "model.safetensors", tmp_path / "back"
    export(run, "safetensors", file)
    before = checkpoint.load(run)
    # The safetensors library's own reader: the pytree's names, every bit, the config.
    with safe_open(str(file), framework="numpy") as f:
        assert sorted(f.keys()) == ["layers.0.b", "layers.0.w", "layers.1.b", "layers.1.w"]
        for i, layer in enumerate(before.params):
            for key in ("w", "b"):
                stored = f.get_tensor(f"layers.{i}.{key}")
                assert stored.dtype == np.dtype(before.config.dtype)
                assert stored.tobytes() == layer[key].tobytes()
        meta = f.metadata()
    assert json.loads(meta["config"]) == before.config.to_dict()
    assert (meta["epoch"], meta["dataset"]) == (str(before.epoch), before.meta["dataset"])
    result = run_cli(["import", str(file), "--out", str(back)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"model written to {back}")
    after = checkpoint.load(back)
    assert after.config == before.config and after.epoch == before.epoch
    original, imported = (run_cli(["eval", str(r), "--json"]) for r in (run, back))
    assert original.exit_code == imported.exit_code == 0, imported.output
    figures = [json.loads(r.stdout) for r in (original, imported)]
    for key in ("accuracy", "loss", "count", "dataset", "epoch", "confusion"):
        assert figures[0][key] == figures[1][key], key


def test_an_imported_run_predicts_and_serves_as_the_original(smoke_model, tmp_path):
    file, back = tmp_path / "model.safetensors", tmp_path / "back"
    export(smoke_model, "safetensors", file)
    assert run_cli(["import", str(file), "--out", str(back)]).exit_code == 0
    digits = tmp_path / "digits.npy"
    np.save(digits, api.evaluate(smoke_model, log=lambda _: None).images[:8])
    predicted = [json.loads(run_cli(["predict", str(r), str(digits), "--json"]).stdout) for r in
                 (smoke_model, back)]  # fmt: skip
    assert predicted[0] == predicted[1]
    digit, label = confident_digit(smoke_model)
    status, answer = post_canvas(back, digit)
    assert status == 200 and answer["digit"] == label


def test_export_replaces_an_existing_file_whole_and_refuses_a_folder(smoke_model, tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an older export" * 1000)
    export(smoke_model, "onnx", out)
    onnx.checker.check_model(onnx.load(out))
    result = run_cli(["export", str(smoke_model), "--format", "onnx", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: cannot write {tmp_path}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left


@pytest.mark.parametrize(("module", "fmt"), [("onnx", "onnx"), ("safetensors", "safetensors")])
def test_a_missing_extra_is_one_line_naming_it(smoke_model, tmp_path, monkeypatch, module, fmt):
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "model"
    result = run_cli(["export", str(smoke_model), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {'ONNX' if fmt == 'onnx' else 'safetensors'} export needs the {module} "
        f"package: pip install 'mnist-jax[{module}]'"
    ]
    assert not out.exists()


# --- hostile safetensors files: one line, exit 2, nothing written


def pack(header: dict, data: bytes, length: int | None = None) -> bytes:
    """Assemble a safetensors file: the u64 header length, the JSON header, the data."""
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@pytest.fixture(scope="module")
def good(smoke_model, tmp_path_factory):
    """(header, data) of the smoke run's safetensors file, to be spoilt by each case."""
    file = tmp_path_factory.mktemp("good") / "model.safetensors"
    export(smoke_model, "safetensors", file)
    raw = file.read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def spoilt(header, data, case):
    """The bytes of `case`: the good file changed in one way."""
    header = json.loads(json.dumps(header))  # a deep copy
    w0 = header["layers.0.w"]
    config = json.loads(header["__metadata__"]["config"])
    if case == "huge header length":
        return pack(header, data, length=1 << 62)
    if case == "header length past the end":
        return pack(header, data)[: 8 + 100]
    if case == "header not JSON":
        return struct.pack("<Q", 4) + b"{{{{" + data
    if case == "a header integer of 5,000 digits":  # JSON, which Python's int() refuses
        raw = (
            json.dumps(header)
            .encode()
            .replace(b'"layers.0.w"', b'"x": ' + b"9" * 5000 + b', "layers.0.w"')
        )
        return struct.pack("<Q", len(raw)) + raw + data
    if case == "a config nested 100,000 deep":
        header["__metadata__"]["config"] = "[" * 100_000 + "]" * 100_000
    elif case == "a config integer of 5,000 digits":
        header["__metadata__"]["config"] = json.dumps(config)[:-1] + ', "seed": ' + "9" * 5000 + "}"
    elif case == "no metadata":
        del header["__metadata__"]
    elif case == "another format":
        header["__metadata__"]["format"] = "pt"
    elif case == "newer format":
        header["__metadata__"]["format_version"] = "2"
    elif case == "invalid config":
        header["__metadata__"]["config"] = json.dumps({**config, "activation": "swish"})
    elif case == "wrong dtype":
        w0["dtype"] = "F16"
    elif case == "shape not the config's":
        config["hidden"] = [64]
        header["__metadata__"]["config"] = json.dumps(config)
    elif case == "huge shape in the config":
        config["hidden"] = [1 << 40]
        header["__metadata__"]["config"] = json.dumps(config)
    elif case == "offsets past the end":
        return pack(header, data[: len(data) // 2])
    elif case == "bytes after the last tensor":
        return pack(header, data + bytes(16))
    elif case == "overlapping offsets":  # layers.0.w starts inside layers.0.b, the first
        w0["data_offsets"] = [o - 4 for o in w0["data_offsets"]]
    elif case == "an extra tensor":
        header["layers.2.w"] = dict(w0)
    elif case == "a missing tensor":
        del header["layers.1.b"]
    elif case == "a malformed entry":
        w0["shape"] = "784x32"
    elif case == "nan weights":
        start = w0["data_offsets"][0]
        data = data[:start] + np.float32(np.nan).tobytes() + data[start + 4 :]
    return pack(header, data)


HOSTILE = {
    "huge header length": "its header length says 4,611,686.0 TB, more than a model's header",
    "header length past the end": "(truncated?)",
    "header not JSON": "the header is not JSON",
    "a header integer of 5,000 digits": "the header is not JSON (Exceeds the limit (4300 digits)",
    "a config nested 100,000 deep": "metadata is invalid (saved config: not valid JSON (nested too",
    "a config integer of 5,000 digits": "invalid (saved config: not valid JSON (Exceeds the limit",
    "no metadata": "no __metadata__ of strings",
    "another format": "its metadata has no mnist-jax config (format 'pt')",
    "newer format": "written by a newer mnist-jax (format 2",
    "invalid config": "the config in its metadata is invalid",
    "wrong dtype": "layers.0.w is F16, its config asks for F32 (float32)",
    "shape not the config's": "layers.0.w has shape (784, 32), its config's 784-64-10 model",
    "huge shape in the config": "layers.0.w has shape (784, 32), its config's 784-1099511627776-10",
    "offsets past the end": "but the file holds",
    "bytes after the last tensor": "(truncated, or bytes left over)",
    "overlapping offsets": "layers.0.w starts at data byte 124, expected 128",
    "an extra tensor": "tensor 'layers.2.w' is not a parameter of its config's 784-32-10 model",
    "a missing tensor": "missing tensor 'layers.1.b'",
    "a malformed entry": "layers.0.w's entry is not {dtype, shape, data_offsets",
    "nan weights": "layers.0.w holds nan or inf values",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_safetensors_file_is_one_line_and_writes_nothing(good, tmp_path, case):
    file, out = tmp_path / "model.safetensors", tmp_path / "run"
    file.write_bytes(spoilt(*good, case))
    result = run_cli(["import", str(file), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {file}: ") and HOSTILE[case] in lines[0], lines[0]
    assert not out.exists()


def test_the_good_file_itself_imports(good, tmp_path):
    """The hostile cases fail for their one change: unchanged, the same bytes import."""
    file = tmp_path / "model.safetensors"
    file.write_bytes(pack(*good))
    assert run_cli(["import", str(file), "--out", str(tmp_path / "run")]).exit_code == 0


def test_tensors_past_the_memory_limit_are_refused_before_reading(good, tmp_path, monkeypatch):
    file = tmp_path / "model.safetensors"
    file.write_bytes(pack(*good))
    monkeypatch.setenv("MNIST_JAX_MAX_BYTES", "1000")
    result = run_cli(["import", str(file), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "its tensors declare" in result.stderr
    assert not (tmp_path / "run").exists()


def test_import_into_a_path_that_is_a_file_is_one_line(good, tmp_path):
    file, out = tmp_path / "model.safetensors", tmp_path / "taken"
    file.write_bytes(pack(*good))
    out.write_text("not a folder")
    result = run_cli(["import", str(file), "--out", str(out)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write the run folder {out}: File exists"
    ]
    assert out.read_text() == "not a folder"
