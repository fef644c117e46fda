"""The L-BFGS seed's Theta1.txt/Theta2.txt files: exact round trip and strict reading."""

import numpy as np
import pytest
from conftest import ROOT, run_cli

from mnist_jax import api, architecture
from mnist_jax.config import load_config
from mnist_jax.data import mnist
from mnist_jax.interchange import theta
from mnist_jax.records import checkpoint

SEED_CONFIG = ROOT / "configs" / "seed-lbfgs-100.toml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seed-lbfgs-100 model (784-100-10 sigmoid, float64) trained a few L-BFGS steps."""
    run = tmp_path_factory.mktemp("theta") / "run"
    config = load_config(SEED_CONFIG).replace(
        dataset="sample", train_size=300, test_size=50, epochs=3, eval_every=3
    )
    api.train(config, run, log=lambda _: None)
    return run


@pytest.mark.option("theta export", "--out")
@pytest.mark.long
def test_theta_files_have_the_seeds_layout(trained, tmp_path):
    result = run_cli(["theta", "export", str(trained), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    params = checkpoint.load(trained).params
    # Read back the way the seed reads them: rows = units, bias first, then one weight per input.
    theta1, theta2 = (np.loadtxt(tmp_path / name) for name in ("Theta1.txt", "Theta2.txt"))
    assert theta1.shape == (100, 785) and theta2.shape == (10, 101)
    np.testing.assert_array_equal(theta1[:, 0], params[0]["b"])
    np.testing.assert_array_equal(theta1[:, 1:], params[0]["w"].T)
    np.testing.assert_array_equal(theta2[:, 0], params[1]["b"])
    np.testing.assert_array_equal(theta2[:, 1:], params[1]["w"].T)


@pytest.mark.option("theta import", "--out")
@pytest.mark.option("theta import", "--config")
@pytest.mark.long
def test_export_then_import_gives_back_every_bit(trained, tmp_path):
    thetas, back = tmp_path / "thetas", tmp_path / "back"
    assert run_cli(["theta", "export", str(trained), "--out", str(thetas)]).exit_code == 0
    result = run_cli(["theta", "import", str(thetas), "-c", str(SEED_CONFIG), "--out", str(back)])
    assert result.exit_code == 0, result.output
    before, after = checkpoint.load(trained), checkpoint.load(back)
    for old, new in zip(before.params, after.params, strict=True):
        for key in ("w", "b"):
            assert new[key].dtype == np.float64
            np.testing.assert_array_equal(new[key].view(np.uint64), old[key].view(np.uint64))
    assert architecture.layer_sizes(after.config) == (784, 100, 10)
    assert (after.config.activation, after.config.output) == ("sigmoid", "sigmoid")
    # The imported run predicts exactly as the trained one, and exports the same bytes again.
    images = mnist.load_sample().test_images[:20]
    np.testing.assert_array_equal(api.predict(back, images), api.predict(trained, images))
    again = tmp_path / "again"
    assert run_cli(["theta", "export", str(back), "--out", str(again)]).exit_code == 0
    for name in ("Theta1.txt", "Theta2.txt"):
        assert (again / name).read_bytes() == (thetas / name).read_bytes()


def seed_predict(folder, images):
    """The seed's own forward pass on its Theta files: sigmoid layers on pixels / 255."""
    a = images.reshape(len(images), -1) / 255.0
    for name in ("Theta1.txt", "Theta2.txt"):
        t = np.loadtxt(folder / name)
        a = 1 / (1 + np.exp(-(np.hstack([np.ones((len(a), 1)), a]) @ t.T)))
    return a.argmax(axis=1)


@pytest.mark.long
def test_export_folds_the_standardisation_so_the_seeds_predict_agrees_with_eval(tmp_path):
    run, thetas = tmp_path / "run", tmp_path / "thetas"
    config = load_config(SEED_CONFIG).replace(
        dataset="sample", train_size=300, test_size=200, epochs=3, eval_every=3,
        input_norm="standardize",
    )  # fmt: skip
    api.train(config, run, log=lambda _: None)
    result = run_cli(["theta", "export", str(run), "--out", str(thetas)])
    assert result.exit_code == 0, result.output
    assert "folded into Theta1" in result.stderr
    evaluation = api.evaluate(run, log=lambda _: None)
    predicted = seed_predict(thetas, evaluation.images)
    np.testing.assert_array_equal(predicted, evaluation.probabilities.argmax(axis=1))
    assert np.mean(predicted == evaluation.labels) == evaluation.accuracy
    # Imported back, the files are a plain-scaled model that evaluates the same.
    back = tmp_path / "back"
    args = ["theta", "import", str(thetas), "-c", str(SEED_CONFIG), "--out", str(back)]
    assert run_cli(args).exit_code == 0
    assert checkpoint.load(back).config.input_norm == "scale"
    images = evaluation.images[:20]
    np.testing.assert_allclose(api.predict(back, images), api.predict(run, images), atol=1e-9)


def test_import_takes_the_layer_sizes_from_the_files(tmp_path):
    rng = np.random.default_rng(0)
    params = [
        {"w": rng.normal(size=(16, 7)), "b": rng.normal(size=7)},
        {"w": rng.normal(size=(7, 3)), "b": rng.normal(size=3)},
    ]
    theta.write_thetas(tmp_path / "t", params)
    notes = []
    ckpt = theta.import_theta(
        tmp_path / "t", load_config(SEED_CONFIG), tmp_path / "run", notes.append
    )
    assert architecture.layer_sizes(ckpt.config) == (16, 7, 3)
    assert "[7]" in notes[0] and "[100]" in notes[0]
    np.testing.assert_array_equal(ckpt.params[1]["w"], params[1]["w"])


GOOD = "1.0 2.0 3.0\n4.0 5.0 6.0\n"
BAD = {
    "not a number": (
        "1.0 2.0 3.0\n4.0 x5 6.0\n",
        "Theta1.txt: line 2, column 2: 'x5' is not a number",
    ),
    "ragged": ("1.0 2.0 3.0\n4.0 5.0\n", "Theta1.txt: line 2 has 2 numbers, line 1 has 3"),
    "blank line": ("1.0 2.0 3.0\n\n4.0 5.0 6.0\n", "Theta1.txt: line 2 is empty"),
    "not finite": ("1.0 nan 3.0\n4.0 5.0 6.0\n", "Theta1.txt: line 1, column 2: nan is not finite"),
    "empty": ("", "Theta1.txt: empty file"),
    "binary": ("1.0 \xff\n", "Theta1.txt: not a text file of numbers (byte 4 is not ASCII)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_theta_file_is_one_error_line(tmp_path, case):
    content, message = BAD[case]
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "Theta1.txt").write_bytes(content.encode("latin-1"))
    (folder / "Theta2.txt").write_text("0 1 1\n0 1 1\n")
    result = run_cli(["theta", "import", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"error: {folder / 'Theta1.txt'}{message.removeprefix('Theta1.txt')}"
    )
    assert not (tmp_path / "run").exists()


def test_layers_that_do_not_chain_or_a_missing_first_file_are_named(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "Theta1.txt").write_text(GOOD)  # 2 units
    (folder / "Theta2.txt").write_text("0 1 1 1\n")  # expects 3 inputs + bias
    result = run_cli(["theta", "import", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "Theta2.txt: has 4 columns but Theta1.txt has 2 rows" in result.stderr
    result = run_cli(["theta", "import", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no Theta1.txt" in result.stderr


def test_a_theta_file_declaring_more_than_the_limit_is_refused_before_parsing(
    tmp_path, monkeypatch
):
    folder = tmp_path / "t"
    folder.mkdir()
    # 40 kB of text under a 100 kB limit, but 100 x 200 float64 numbers take 160 kB
    (folder / "Theta1.txt").write_text(("0 " * 200 + "\n") * 100)
    monkeypatch.setenv("MNIST_JAX_MAX_BYTES", "100000")
    result = run_cli(["theta", "import", str(folder), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "Theta1.txt: 100 lines of 200 numbers make a float64 array (160.0 kB)" in result.stderr
    assert not (tmp_path / "run").exists()
