"""`mnist-jax gradcheck`: JAX's gradients against NumPy backprop on real MNIST batches."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax import data
from mnist_jax.architecture import num_params
from mnist_jax.checks import gradcheck, reference
from mnist_jax.cli.app import app
from mnist_jax.config import load_config
from tests.conftest import ROOT, SMOKE, built, run_cli

runner = CliRunner()
DEFAULT = ROOT / "configs" / "default.toml"
BACKPROP = reference.gradients  # kept: a test replaces the module's attribute


def quiet(_: str) -> None:
    pass


def flipped_first_weight(params, x, y, **settings):
    """The reference with the sign of dW_1 wrong: a bug gradcheck must catch."""
    value, grads = BACKPROP(params, x, y, **settings)
    grads[0] = {**grads[0], "w": -grads[0]["w"]}
    return value, grads


def test_relative_error_is_scale_free_and_zero_for_exact_zeros():
    a = np.array([[0.0, 1.0], [2.0, -4.0]])
    b = a + np.array([[0.0, 0.0], [0.0, 4e-6]])
    assert gradcheck.relative_error(a, b) == pytest.approx(1e-6)
    assert gradcheck.relative_error(255 * a, 255 * b) == pytest.approx(1e-6)
    assert gradcheck.relative_error(np.zeros((3, 2)), np.zeros((3, 2))) == 0.0
    assert gradcheck.relative_error(np.zeros(2), np.array([0.0, 1e-30])) == 1.0


@pytest.mark.long
def test_default_config_passes_in_float64_with_one_row_per_leaf():
    result = runner.invoke(
        app, ["gradcheck", "--config", str(DEFAULT), "--dataset", "sample", "--batch", "32"]
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    (width,) = load_config(DEFAULT).hidden
    expected = [("1", "w", f"784x{width}"), ("1", "b", f"{width}")]
    expected += [("2", "w", f"{width}x10"), ("2", "b", "10")]
    assert [(r[0], r[1], r[2]) for r in rows] == expected
    assert all(r[-1] == "ok" for r in rows)
    assert "FAIL" not in result.stdout


@pytest.mark.option("gradcheck", "--json")
def test_smoke_config_passes_in_float32_as_json():
    result = runner.invoke(
        app, ["gradcheck", "--config", str(SMOKE), "--dtype", "float32", "--batch", "32", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["dtype"] == "float32"
    assert [(r["layer"], r["param"], r["shape"]) for r in report["rows"]] == [
        (1, "w", [784, 32]), (1, "b", [32]), (2, "w", [32, 10]), (2, "b", [10]),
    ]  # fmt: skip
    assert max(r["relative_error"] for r in report["rows"]) <= gradcheck.TOLERANCE["float32"]
    assert report["loss"]["ok"]


@pytest.mark.parametrize(
    ("changes", "dtype"),
    [
        (
            {"hidden": [12], "init": "normal", "init_std": 0.001, "input_norm": "scale",
             "input_scale": 1.0},
            "float32",
        ),
        (
            {
                "hidden": [20], "activation": "sigmoid", "output": "sigmoid", "l2": 0.1,
                "init": "uniform", "init_low": -0.15, "init_high": 0.15, "bias_init": "drawn",
            },
            "float64",
        ),
        ({"hidden": [8, 6], "activation": "tanh", "init": "glorot"}, "float64"),
        ({"hidden": [], "l2": 1.0, "init": "normal"}, "float32"),
    ],
)  # fmt: skip
@pytest.mark.long
def test_varied_models_pass(changes, dtype):
    config = load_config(SMOKE, changes)
    report = gradcheck.check_gradients(config, batch=16, dtype=dtype, log=quiet)
    assert report["passed"], gradcheck.format_report(report)
    assert len(report["rows"]) == 2 * (len(config.hidden) + 1)
    if config.input_scale == 1.0:
        # Unscaled pixels, and rows of dW_1 that are exactly zero (pixels blank in every
        # image of the batch) on both sides: the relative error must cope with both.
        trainer, _ = built(config)
        x, _ = gradcheck.first_batch(trainer, data.load(config, quiet), 16)
        assert np.any(np.all(x == 0, axis=0))
        assert report["rows"][0]["max_abs_error"] > 0  # not a trivially exact comparison


def test_a_wrong_reference_fails_and_marks_its_row():
    report = gradcheck.check_gradients(
        load_config(SMOKE), batch=16, reference_gradients=flipped_first_weight, log=quiet
    )
    assert not report["passed"]
    failing = [(r["layer"], r["param"]) for r in report["rows"] if not r["ok"]]
    assert failing == [(1, "w")]
    assert report["rows"][0]["relative_error"] == pytest.approx(2.0)  # |g - (-g)| = 2|g|
    lines = gradcheck.format_report(report)
    assert [line.split()[:2] for line in lines if line.endswith("FAIL")] == [["1", "w"]]
    # The float64 check ran in JAX's x64 mode; it must not leak out of the call.
    assert report["dtype"] == "float64"
    assert jnp.zeros(3).dtype == jnp.float32
    assert not jax.config.jax_enable_x64


def test_cli_exits_1_when_the_reference_disagrees(monkeypatch):
    monkeypatch.setattr(reference, "gradients", flipped_first_weight)
    result = runner.invoke(app, ["gradcheck", "--config", str(SMOKE), "--batch", "16"])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.stdout and "FAILED" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch must be a positive"),
        (["--batch", "100000"], "no larger than the 9,167"),
        (["--dtype", "float16"], "'float16' is not one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    result = run_cli(["gradcheck", "--config", str(SMOKE), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def shipped_configs() -> list:
    """Every bundled config; those of over a million parameters are in the long group (their
    float64 reference takes tens of seconds to compile and run)."""
    params = []
    for path in sorted((ROOT / "configs").glob("*.toml")):
        large = num_params(load_config(path, {})) > 1_000_000
        params.append(pytest.param(path, id=path.stem, marks=[pytest.mark.long] if large else []))
    return params


@pytest.mark.parametrize("path", shipped_configs())
def test_gradcheck_passes_on_every_shipped_config(path):
    args = ["gradcheck", "--config", str(path), "--dataset", "sample", "--batch", "16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("passed")
