import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax.checks import plots
from mnist_jax.cli.app import app
from tests.conftest import SMOKE
from tests.trained_model import trained_smoke_model  # noqa: F401 (fixture)

pytest.importorskip("matplotlib", reason="the plot extra is not installed")
Image = pytest.importorskip("PIL.Image", reason="the plot extra is not installed")

runner = CliRunner()


@pytest.fixture(scope="module")
def plotted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plots") / "run"
    result = runner.invoke(
        app, ["train", "--config", str(SMOKE), "--out", str(out), "--epochs", "2", "--plot"]
    )
    assert result.exit_code == 0, result.output
    return out, result


def assert_real_picture(path, min_size=(300, 200)):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.astype(float).var() > 0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1


@pytest.mark.option("train", "--plot")
@pytest.mark.long
def test_train_with_plot_writes_four_pictures(plotted_run):
    out, result = plotted_run
    for name in plots.FILES:
        assert f"plot {out / name}" in result.output
        assert_real_picture(out / name)


@pytest.mark.long
def test_plot_command_draws_a_run_again(plotted_run):
    out, _ = plotted_run
    for name in plots.FILES:
        (out / name).unlink()
    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(out / name) for name in plots.FILES]
    for name in plots.FILES:
        assert_real_picture(out / name)


def test_confusion_heat_map_has_colour_where_the_counts_are():
    plt = plots.require_matplotlib()
    confusion = np.diag(np.arange(1, 11) * 10)
    figure = plots.confusion_figure(plt, confusion, 1.0, "test")
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    plt.close(figure)
    blue = (pixels[..., 2].astype(int) - pixels[..., 0].astype(int)) > 100
    assert blue.sum() > 1000  # the diagonal cells are drawn in the colour map's dark blues


def test_samples_include_mistakes_first_examples_otherwise():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7])
    probs = np.eye(10)[[0, 1, 9, 3, 4, 9, 6, 7]]  # examples 2 and 5 are wrong
    chosen = plots.pick_samples(labels, probs, 8)
    assert chosen.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    chosen = plots.pick_samples(labels, probs, 4)  # room for one mistake
    assert chosen.tolist() == [0, 1, 2, 3]


def test_sample_grid_shows_a_quarter_of_mistakes_even_far_down_the_split():
    plt = plots.require_matplotlib()
    count = 200
    labels = np.arange(count) % 10
    predicted = labels.copy()
    wrong = np.arange(60, count, 7)  # 20 mistakes, all beyond the first 48 examples
    predicted[wrong] = (labels[wrong] + 3) % 10
    probs = np.eye(10)[predicted]
    images = np.zeros((count, 28, 28), np.uint8)
    images.reshape(count, -1)[np.arange(count), np.arange(count)] = 255  # image i lights pixel i
    figure = plots.samples_figure(plt, images, labels, probs, "test")
    shown = {}  # example index -> its title's colour
    for ax in figure.axes:
        if ax.images:
            index = int(np.argmax(np.asarray(ax.images[0].get_array()).reshape(-1)))
            shown[index] = ax.title.get_color()
    plt.close(figure)
    cells = plots.GRID[0] * plots.GRID[1]
    quarter = cells // 4
    assert len(shown) == cells
    # The first quarter-grid of mistakes, in red; the first correct examples fill the rest.
    assert sorted(i for i, colour in shown.items() if colour == "red") == wrong[:quarter].tolist()
    correct = np.setdiff1d(np.arange(count), wrong)
    assert sorted(i for i, colour in shown.items() if colour != "red") == (
        correct[: cells - quarter].tolist()
    )


def test_without_matplotlib_the_message_says_how_to_install(smoke_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    result = runner.invoke(app, ["plot", str(smoke_model)])
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "error: plotting needs matplotlib: pip install 'mnist-jax[plot]'"
    )


def test_plot_of_a_folder_without_a_run_is_exit_2(tmp_path):
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2
    assert "metrics.jsonl not found" in result.stderr


@pytest.mark.long
def test_a_distorting_run_draws_its_images_beside_their_distorted_copies(plotted_run, tmp_path):
    from mnist_jax import data
    from mnist_jax.config import load_config

    out, _ = plotted_run
    assert not (out / plots.DISTORTED_FILE).exists()  # the smoke run distorts nothing
    config = load_config(SMOKE, {"augment": "affine", "epochs": 1, "hidden": [16]})
    grid = plots.distorted_samples(config, log=lambda _: None)
    stored = data.load(config, log=lambda _: None).train.x[: len(grid)]
    np.testing.assert_array_equal(grid[:, 0], stored)  # column 0: as stored
    assert all(not np.array_equal(grid[i, 1], stored[i]) for i in range(len(grid)))
    run = tmp_path / "distorted"
    args = ["train", "--config", str(SMOKE), "--epochs", "1", "--hidden", "16"]
    result = runner.invoke(app, [*args, "--augment", "affine", "--out", str(run), "--plot"])
    assert result.exit_code == 0, result.output
    assert_real_picture(run / plots.DISTORTED_FILE)
