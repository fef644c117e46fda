"""Run tracking: every writer gets every record, and TensorBoard's own reader finds them.

The event files are read back with `tensorboard.backend.event_processing` (TensorBoard's
reader, not the writer's library), and compared with the values the run returned and the
metrics.jsonl / summary.json it wrote.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mnist_jax.checks import pictures
from mnist_jax.config import load_config
from mnist_jax.records import rundir, tensorboard
from mnist_jax.training import optim
from tests.conftest import SMOKE, run_cli
from tests.trained_model import trained_smoke_model  # noqa: F401 (the session fixture)

PER_EPOCH = {
    "train_loss": "loss/train",
    "val_loss": "loss/validation",
    "val_accuracy": "accuracy/validation",
    "lr": "learning_rate",
    "seconds": "time/epoch_seconds",
    "examples_per_second": "time/examples_per_second",
}


def read_events(folder: Path) -> EventAccumulator:
    """TensorBoard's reader over one run folder, keeping every event."""
    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    return reader.Reload()


def scalars(reader: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in reader.Scalars(tag)]


def hparams_of(reader: EventAccumulator) -> dict[str, plugin_data_pb2.HParamsPluginData]:
    """The HParams plugin's records: {"experiment", "session_start_info", ...}."""
    return {
        tag.rsplit("/", 1)[-1]: plugin_data_pb2.HParamsPluginData.FromString(content)
        for tag, content in reader.PluginTagToContent("hparams").items()
    }


def png_pixels(encoded: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encoded)))


def test_a_run_has_one_scalar_per_epoch_for_each_metric(smoke_model):
    records = rundir.read_metrics(smoke_model)
    epochs = load_config(SMOKE).epochs
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    reader = read_events(smoke_model)
    for key, tag in PER_EPOCH.items():
        expected = [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]
        assert scalars(reader, tag) == expected, tag
    # the learning rate is the schedule's: cosine from 0.5 towards 0 over the run
    lrs = [value for _, value in scalars(reader, "learning_rate")]
    assert lrs[0] < 0.5 and lrs[-1] < lrs[0] / 100


def test_the_final_metrics_and_the_hparams_entry_are_there(smoke_model):
    summary = json.loads((smoke_model / "summary.json").read_text())
    reader = read_events(smoke_model)
    for key in ("test_accuracy", "test_loss", "validation_accuracy", "train_loss"):
        value = pytest.approx(summary[key], rel=1e-6)
        assert scalars(reader, f"final/{key}") == [(summary["epochs"], value)]
    entry = hparams_of(reader)
    values = entry["session_start_info"].session_start_info.hparams
    assert values["lr"].number_value == 0.5 and values["hidden"].string_value == "32"
    assert values["optimizer"].string_value == summary["config"]["optimizer"]
    assert "data_dir" not in values  # None in the config: nothing to show
    experiment = entry["experiment"].experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"final/test_accuracy", "final/test_loss"} <= metrics
    assert {h.name for h in experiment.hparam_infos} >= {"lr", "hidden", "seed"}


def test_the_run_has_its_confusion_matrix_and_mistakes(smoke_model):
    reader = read_events(smoke_model)
    (confusion,) = reader.Images("images/confusion_matrix")
    (mistakes,) = reader.Images("images/mistakes")
    assert confusion.step == mistakes.step == load_config(SMOKE).epochs
    drawn = png_pixels(confusion.encoded_image_string)
    assert drawn.shape == (confusion.height, confusion.width, 3) and drawn.shape[0] > 100
    tiles = png_pixels(mistakes.encoded_image_string)
    assert tiles.ndim == 2 and tiles.shape[1] == pictures.COLUMNS * (28 + 2)
    assert tiles.shape[0] == 6 * (28 + 5 * pictures.SCALE + 2 + 2)  # 48 mistakes, 6 rows


def test_the_confusion_picture_colours_hits_and_mistakes():
    confusion = np.array([[9, 0, 1], [0, 10, 0], [5, 0, 5]])
    drawn = pictures.confusion_image(confusion)
    size = drawn.shape[0]
    cell = (size - (pictures.text("2").shape[1] + 10)) // 3
    corner = size - 3 * cell

    def colour(t: int, p: int) -> np.ndarray:  # a pixel near the cell's corner, off the digits
        return drawn[corner + t * cell + 1, corner + p * cell + 1].astype(int)

    assert (colour(0, 1) == 255).all()  # no example: white
    blue, red = colour(1, 1), colour(2, 0)
    assert blue[2] > blue[0] + 100  # a hit: blue
    assert red[0] > red[2] + 100  # half the row mistaken: red
    assert colour(2, 2)[0] > colour(1, 1)[0]  # 50% recall is paler than 100%


def test_the_mistakes_picture_writes_true_and_predicted_digits_under_each_image():
    images = np.full((3, 4, 4), 200, np.uint8)
    labels = np.array([1, 2, 3])
    probs = np.array([[0.1, 0.9, 0, 0], [0.2, 0.1, 0.7, 0], [0.7, 0.1, 0.1, 0.1]])
    drawn = pictures.mistakes_image(images, labels, probs)
    assert pictures.mistakes_image(images, labels, np.eye(4)[labels]) is None  # none wrong
    caption = pictures.text("3>0")
    tile_w = caption.shape[1]  # wider than the 4-pixel images
    assert drawn.shape[1] == pictures.COLUMNS * (tile_w + 2)
    assert (drawn[6 : 6 + caption.shape[0], :tile_w] == caption * 255).all()
    assert drawn[:4].max() == 200 and drawn[:, tile_w + 2 :].max() == 0  # one mistake only


def test_the_png_encoder_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    for shape in ((5, 7, 1), (6, 3, 3), (2, 9, 4)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        decoded = png_pixels(tensorboard.png(image))
        assert (decoded.reshape(shape) == image).all()


def test_images_handed_in_reach_tensorboard(tmp_path):
    """The hook a run that distorts uses: any named picture goes to every writer."""
    writers = rundir.open_writers(tmp_path)
    assert writers.takes_images
    samples = pictures.grid(np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28))
    writers.write_images(4, {"distorted_samples": samples})
    writers.close()
    (image,) = read_events(tmp_path).Images("images/distorted_samples")
    assert image.step == 4 and (png_pixels(image.encoded_image_string) == samples).all()


def test_a_fresh_run_replaces_old_events_and_a_resumed_one_adds_to_them(tmp_path):
    for epochs_done in (0, 1, 0):
        writers = rundir.open_writers(tmp_path, epochs_done)
        writers.write_scalars(epochs_done + 1, {"train_loss": 1.0 + epochs_done})
        writers.close()
        steps = [step for step, _ in scalars(read_events(tmp_path), "loss/train")]
        assert steps == ([1, 2] if epochs_done else [1])
        assert len(list(tmp_path.glob(tensorboard.EVENTS_GLOB))) == len(steps)


def test_without_the_extra_one_line_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # its import now fails
    tensorboard._say_missing.cache_clear()
    for folder in ("a", "b"):  # two runs in one process: said once
        writers = rundir.open_writers(tmp_path / folder)
        writers.write_scalars(1, {"train_loss": 0.5})
        writers.write_images(1, {"mistakes": np.zeros((2, 2), np.uint8)})
        writers.close()
        assert not writers.takes_images
        assert json.loads((tmp_path / folder / "metrics.jsonl").read_text())["train_loss"] == 0.5
        assert not list((tmp_path / folder).glob(tensorboard.EVENTS_GLOB))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'mnist-jax[tensorboard]'" in err
    tensorboard._say_missing.cache_clear()


def test_the_epoch_lrs_follow_the_schedule():
    config = load_config(SMOKE, {"epochs": 4, "lr": 0.2, "schedule": "constant"})
    assert optim.epoch_lrs(config, 640).tolist() == [0.2] * 4
    lbfgs = config.replace(optimizer="lbfgs", batch_size="full")
    assert optim.epoch_lrs(lbfgs, 640) is None
    cosine = optim.epoch_lrs(config.replace(schedule="cosine", warmup_epochs=0), 640)
    steps = np.arange(1, 5) * 10 - 1  # the last step of each epoch, 10 steps per epoch
    expected = 0.1 * (1 + np.cos(np.pi * steps / 40))
    assert cosine == pytest.approx(expected, abs=1e-7)  # a float32 schedule


@pytest.mark.option("sweep", "--out")
@pytest.mark.long
def test_a_sweep_writes_one_tensorboard_run_per_model(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "--config", str(SMOKE), "--hidden", "8", "--seeds", "0,1", "--lrs", "0.1,0.4"]
    result = run_cli([*args, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert f"tensorboard --logdir {out}" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "seed0-lr0.1", "seed0-lr0.4", "seed1-lr0.1", "seed1-lr0.4",
    ]  # fmt: skip
    losses, shapes = set(), set()
    for row in rows:
        folder = out / f"seed{row['seed']}-lr{row['lr']:g}"
        reader = read_events(folder)
        records = rundir.read_metrics(folder)
        train = scalars(reader, "loss/train")
        assert train == [(r["epoch"], pytest.approx(r["train_loss"])) for r in records]
        assert [s for s, _ in train] == [1, 2] and train[-1][1] == pytest.approx(row["train_loss"])
        losses.add(train[-1][1])
        (_, first), (_, second) = scalars(reader, "learning_rate")
        assert 0 < second < first < row["lr"]  # the cosine schedule, from the model's own peak
        shapes.add(round(first / row["lr"], 5))
        assert scalars(reader, "final/test_accuracy") == [(2, pytest.approx(row["test_accuracy"]))]
        start = hparams_of(reader)["session_start_info"].session_start_info
        assert start.hparams["seed"].number_value == row["seed"]
    assert len(losses) == 4  # four different models
    assert len(shapes) == 1  # one schedule, scaled by each model's lr


@pytest.mark.long
def test_a_distorting_run_shows_its_distorted_training_samples(tmp_path):
    import mnist_jax
    from mnist_jax.training import distort

    config = load_config(SMOKE, {"epochs": 1, "hidden": [16], "augment": "elastic"})
    result = mnist_jax.train(config, tmp_path / "run", log=lambda _: None)
    (picture,) = read_events(tmp_path / "run").Images("images/distorted_samples")
    tiles = png_pixels(picture.encoded_image_string)  # 6 rows: an image, then 5 copies
    assert tiles.shape[:2] == (6 * 30, 6 * 30)
    first = mnist_jax.load_data(config).train.x[:6]
    np.testing.assert_array_equal(tiles[:28, :28], first[0])  # the image as stored ...
    copies = distort.samples(result.config, first, 5)  # column 0: the images as stored
    np.testing.assert_array_equal(tiles[:28, 30:58], np.rint(copies[0, 1]).astype(np.uint8))
    assert not np.array_equal(tiles[:28, 30:58], first[0])  # ... beside a distorted copy
