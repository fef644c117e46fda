"""The activation comparison: one run per activation, the table, the plot and its extra."""

import json
import sys

import pytest
from typer.testing import CliRunner

from mnist_jax import architecture
from mnist_jax.cli import app as cli
from mnist_jax.config import load_config
from mnist_jax.errors import ConfigError, MnistJaxError
from mnist_jax.tools import compare
from tests.conftest import ROOT, SMOKE

CONFIG = ROOT / "configs" / "seed-activations-15.toml"


@pytest.fixture(scope="module")
def rows():
    config = load_config(CONFIG).replace(dataset="sample", train_size=2000, epochs=2)
    return compare.compare(config, ("sigmoid", "tanh", "relu"), log=lambda _: None)


@pytest.mark.long
def test_each_activation_learns_and_gets_its_own_row(rows):
    assert [r["activation"] for r in rows] == ["sigmoid", "tanh", "relu"]
    # Seeds 0-4 give test errors of 0.47-0.58 (sigmoid), 0.20-0.25 (tanh) and 0.18-0.21
    # (relu), train errors a little lower; each ceiling is about 3.5 seed-to-seed standard
    # deviations above the mean.
    ceilings = {"sigmoid": 0.66, "tanh": 0.29, "relu": 0.25}
    for row in rows:
        assert len(row["losses"]) == 2 and row["final_loss"] == row["losses"][-1]
        ceiling = ceilings[row["activation"]]
        assert row["test_error"] < ceiling and row["train_error"] < ceiling, row
        assert row["losses"][1] < row["losses"][0] and row["seconds"] > 0
    assert rows[2]["test_error"] < rows[0]["test_error"]  # relu learns faster than sigmoid
    # Different activations are different functions: the curves must differ.
    assert len({r["final_loss"] for r in rows}) == 3


@pytest.mark.long
def test_table_has_one_line_per_activation(rows):
    lines = compare.format_table(rows)
    assert lines[0].split() == ["activation", "train", "error", "test", "error", "final",
                                "loss", "seconds"]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["sigmoid", "tanh", "relu"]
    assert f"{rows[2]['test_error']:.2%}" in lines[3]


def test_plot_draws_a_png_of_the_curves_it_is_given(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {"activation": "sigmoid", "losses": [2.3, 1.1, 0.7]},
        {"activation": "tanh"},  # diverged: no curve, still no error
        {"activation": "relu", "losses": [1.9, 0.4, 0.2]},
    ]
    path = tmp_path / "losses.png"
    compare.plot_losses(rows, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(MnistJaxError, match=r"pip install 'mnist-jax\[plot\]'"):
        compare.plot_losses([], tmp_path / "x.png")
    result = CliRunner().invoke(
        cli.app, ["compare", "--config", str(CONFIG), "--plot", str(tmp_path / "x.png")]
    )
    assert result.exit_code == 2  # before any training
    assert "mnist-jax[plot]" in result.output


def test_activation_list_is_checked():
    assert compare.parse_activations("relu, tanh") == ("relu", "tanh")
    for bad in ("relu,swish", "relu,relu", ""):
        with pytest.raises(ConfigError, match="--activations"):
            compare.parse_activations(bad)


@pytest.mark.option("compare", "--out")
@pytest.mark.long
def test_compare_runs_on_a_dataset_that_is_not_mnist(tmp_path):
    from mnist_jax.records import checkpoint
    from tests.conftest import run_cli
    from tests.test_owndata import stroke_folder

    folder = stroke_folder(tmp_path / "strokes", 16, 3)  # 16x16 images, 3 classes
    args = ["compare", "--activations", "tanh,relu", "--epochs", "2", "--json"]
    out = ["--out", str(tmp_path / "runs")]
    result = run_cli([*args, "--dataset", "idx", "--data-dir", str(folder), *out])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["activation"] for r in rows] == ["tanh", "relu"]
    assert all(r["test_error"] < 1 / 3 for r in rows)  # chance would be 2/3
    saved = checkpoint.load(tmp_path / "runs" / "relu").config
    assert architecture.layer_sizes(saved) == (256, *saved.hidden, 3)
    # one TensorBoard run per activation, side by side under --out
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    board = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs")).Reload()
    assert sorted(board.Runs()) == ["relu", "tanh"]
    for row in rows:
        run = row["activation"]
        (final,) = board.Scalars(run, "final/test_accuracy")
        assert final.value == pytest.approx(1 - row["test_error"])
        assert [e.value for e in board.Scalars(run, "loss/train")] == pytest.approx(row["losses"])
        assert board.Images(run, "images/confusion_matrix")[0].width > 3 * 10  # 3 classes
    assert f"tensorboard --logdir {tmp_path / 'runs'}" in result.stderr


@pytest.mark.long
def test_a_diverged_activation_is_marked_and_the_others_still_compared(monkeypatch):
    from mnist_jax import api
    from mnist_jax.errors import Diverged

    real_train = api.train

    def relu_diverges(config, *args, **kwargs):
        if config.activation == "relu":
            raise Diverged(1, float("nan"), config.lr, "the training loss is nan", 0)
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(api, "train", relu_diverges)
    config = load_config(SMOKE).replace(train_size=1000, epochs=1)
    rows = compare.compare(config, ("relu", "tanh"), log=lambda _: None)
    assert rows[0] == {"activation": "relu", "diverged_epoch": 1, "final_loss": None}
    assert rows[1]["activation"] == "tanh" and rows[1]["test_error"] < 0.5
    json.dumps(rows)  # JSON has no nan: the diverged loss is None
    table = compare.format_table(rows)
    assert "diverged at epoch 1 (loss not finite)" in table[1] and "tanh" in table[2]
