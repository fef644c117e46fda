import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax.cli.app import app
from mnist_jax.serving import inference as predict
from tests.conftest import run_cli
from tests.test_imagefile import damaged_pictures
from tests.test_preprocess import LOSSY, USER_FORMATS, drawn, on_paper, pgm_p5, user_files
from tests.test_reliability import mnist_jax
from tests.trained_model import (  # noqa: F401 (fixture)
    confident_digit,
    confident_digits,
    trained_smoke_model,
)

runner = CliRunner()


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_probabilities_sum_to_one_and_keep_the_order(output):
    logits = jnp.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]])
    probs = np.asarray(predict.probabilities(logits, output))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(probs.argsort(axis=1), np.asarray(logits).argsort(axis=1))


def test_predictor_gives_the_same_answer_whatever_the_batch(smoke_model):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    alone = predict.load_predictor(smoke_model, batch_size=1)(images)
    together = predict.load_predictor(smoke_model, batch_size=4)(images)
    assert alone.shape == (5, 10)
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-7)


def test_a_digit_on_paper_is_read_right_from_pgm_png_and_npy(smoke_model, tmp_path):
    digit, label = confident_digit(smoke_model)
    paper = on_paper(digit)
    (tmp_path / "digit.pgm").write_bytes(pgm_p5(paper))
    np.save(tmp_path / "digits.npy", np.stack([digit, 255 - digit]))
    files = [tmp_path / "digit.pgm", tmp_path / "digits.npy"]
    if importlib.util.find_spec("PIL") is not None:
        from PIL import Image

        Image.fromarray(paper).save(tmp_path / "digit.png")
        files.append(tmp_path / "digit.png")
    results = predict.predict_files(smoke_model, files)
    assert len(results) == len(files) + 1  # the .npy holds two images
    for r in results:
        assert r["digit"] == label, r["file"]
        assert r["top"][0]["digit"] == label
        assert sum(r["probabilities"]) == pytest.approx(1.0, rel=1e-5)
        assert [t["probability"] for t in r["top"]] == sorted(
            (t["probability"] for t in r["top"]), reverse=True
        )


@pytest.mark.option("predict", "--json")
def test_predict_cli_text_and_json(smoke_model, tmp_path):
    digit, label = confident_digit(smoke_model)
    path = tmp_path / "digit.pgm"
    path.write_bytes(pgm_p5(on_paper(digit)))
    text = runner.invoke(app, ["predict", str(smoke_model), str(path)])
    assert text.exit_code == 0, text.output
    assert text.stdout.split()[:2] == [str(path), str(label)]
    assert text.stdout.count("%") == 3  # the top three probabilities
    result = runner.invoke(app, ["predict", str(smoke_model), str(path), "--json"])
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert record["digit"] == label and len(record["probabilities"]) == 10


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"P5\n2 2\n255\n\x00", "needs 4"), (b"hello", "not a PNG"), (None, "cannot read")],
)
def test_predict_cli_bad_file_is_one_line_exit_2(smoke_model, tmp_path, content, message):
    path = tmp_path / "bad.pgm"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["predict", str(smoke_model), str(path)])
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_32_bit_image_with_negative_samples_is_one_line_naming_it(smoke_model, tmp_path):
    """32-bit samples have no range of their own: below zero, the file is refused, not guessed."""
    from PIL import Image

    digit, _ = confident_digit(smoke_model)
    signed = on_paper(digit).astype(np.int32) * 257  # the digit at 16 bits, 0..65535 ...
    signed[0, 0] = -1  # ... but for one sample below zero
    path = tmp_path / "signed.tif"
    Image.fromarray(signed).save(path)  # Pillow's mode "I": 32-bit signed samples
    assert Image.open(path).mode == "I"
    result = runner.invoke(app, ["predict", str(smoke_model), str(path)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and "outside 0..65535" in line, line


def test_png_without_pillow_says_how_to_install(smoke_model, tmp_path, monkeypatch):
    path = tmp_path / "digit.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails
    result = runner.invoke(app, ["predict", str(smoke_model), str(path)])
    assert result.exit_code == 2
    assert "pip install 'mnist-jax[images]'" in result.stderr


@pytest.fixture(scope="module")
def user_predictions(smoke_model, tmp_path_factory) -> dict[str, list[dict]]:
    """predict's records for 10 test digits drawn at 168x168 and saved in each of USER_FORMATS,
    all read in one call: {format: [record] * 10}."""
    digits, _ = confident_digits(smoke_model, 10)
    folder = tmp_path_factory.mktemp("user-images")
    files = [user_files(drawn(digit), folder, f"d{i}") for i, digit in enumerate(digits)]
    records = predict.predict_files(smoke_model, [f[name] for name in USER_FORMATS for f in files])
    return {name: records[10 * i : 10 * (i + 1)] for i, name in enumerate(USER_FORMATS)}


@pytest.mark.parametrize("name", [f for f in USER_FORMATS if f != "png8"])
def test_each_format_predicts_what_the_8_bit_png_does(user_predictions, name):
    eight_bit, other = user_predictions["png8"], user_predictions[name]
    assert [r["digit"] for r in other] == [r["digit"] for r in eight_bit]  # 10 of 10
    if name not in LOSSY:  # the same pixels (to float32 rounding): the same probabilities
        np.testing.assert_allclose(
            [r["probabilities"] for r in other], [r["probabilities"] for r in eight_bit], atol=1e-5
        )


def test_predict_cli_reads_16_bit_and_float_files_like_8_bit(smoke_model, tmp_path):
    digit, label = confident_digit(smoke_model)
    files = user_files(drawn(digit), tmp_path, "d")
    chosen = [str(files[name]) for name in ("png8", "png16", "tiff-float-wide", "gif")]
    result = runner.invoke(app, ["predict", str(smoke_model), *chosen, "--json"])
    assert result.exit_code == 0, result.output
    assert [r["digit"] for r in json.loads(result.stdout)] == [label] * 4


# --- damaged and large pictures through the command itself


@pytest.mark.parametrize("name", ["png-broken-chunk", "jpeg-first-20-bytes", "jpeg-ffd8ffd9"])
def test_predict_on_a_damaged_picture_is_one_line_exit_2(smoke_model, tmp_path, name):
    path = tmp_path / f"{name}.{name.split('-')[0]}"
    path.write_bytes(damaged_pictures()[name])
    result = run_cli(["predict", str(smoke_model), str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {path}: not a readable ")


@pytest.mark.parametrize("name", ["tiff-truncated-lzw", "tiff-corrupt-strip"])
@pytest.mark.long
def test_nothing_but_the_line_reaches_a_real_stderr(smoke_model, tmp_path, name):
    """In a real process: Pillow's warnings and libtiff's own messages never show."""
    path = tmp_path / f"{name}.tif"
    path.write_bytes(damaged_pictures()[name])
    done = mnist_jax("predict", str(smoke_model), str(path))
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: {path}: not a readable TIFF image (")


PEAKS = """
import re, sys
from mnist_jax.cli.app import main
def peak(): return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
model, small, large = sys.argv[1:]
assert main(["predict", model, small]) == 0
before = peak()
assert main(["predict", model, large]) == 0
print(before, peak())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
@pytest.mark.long
def test_a_picture_at_the_pixel_cap_costs_predict_a_few_bytes_a_pixel(smoke_model, tmp_path):
    """VmHWM of predict on a 25-megapixel PNG, beyond its peak on a small one: Pillow's 25 MB
    gray picture and the reduced floats (969 MB before decoding was reduced and in strips)."""
    from PIL import Image

    digit, label = confident_digit(smoke_model)
    Image.fromarray(on_paper(digit)).save(tmp_path / "small.png")
    Image.fromarray(on_paper(digit)).resize((5000, 5000)).save(tmp_path / "large.png")
    pictures = [str(tmp_path / "small.png"), str(tmp_path / "large.png")]
    done = subprocess.run(
        [sys.executable, "-c", PEAKS, str(smoke_model), *pictures],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(f"  {label}   ") == 2  # both read as the digit drawn
    before, after = map(int, done.stdout.split()[-2:])  # kB
    assert (after - before) * 1024 < 4 * 25_000_000
