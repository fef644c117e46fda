"""`mnist-jax committee`: several runs as one model that eval, predict, serve and export take.

The members are the shared smoke run (standardised inputs) and one short run on the bundled
sample whose pixels are only scaled (`input_norm = "scale"`), so each member has to
standardise the pixels its own way for the committee's probabilities to be the mean of theirs.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import SMOKE, run_cli

from mnist_jax import api, architecture
from mnist_jax.config import load_config
from mnist_jax.data import preprocess
from mnist_jax.records import checkpoint, committee
from tests.test_interchange import onnx_probabilities
from tests.test_serve import post_canvas
from tests.trained_model import confident_digit, trained_smoke_model  # noqa: F401 (fixture)

QUIET = {"log": lambda _: None}


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """A one-epoch run on 2,000 sample images whose pixels are scaled, not standardised."""
    run = tmp_path_factory.mktemp("scaled") / "run"
    config = load_config(SMOKE, {"epochs": 1, "train_size": 2000, "input_norm": "scale"})
    api.train(config, run, **QUIET)
    return run


def make(runs, out):
    """`mnist-jax committee RUNS --out OUT --json`: the manifest it prints."""
    result = run_cli(["committee", *map(str, runs), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def mixed(smoke_model, scaled, tmp_path_factory):
    """The committee of the smoke run and the scaled run."""
    out = tmp_path_factory.mktemp("mixed") / "committee"
    make([smoke_model, scaled], out)
    return out


@pytest.fixture(scope="module")
def evaluated():
    """api.evaluate of a model on the test split, once per path."""
    found = {}

    def evaluate(path):
        if path not in found:
            found[path] = api.evaluate(path, **QUIET)
        return found[path]

    return evaluate


def eval_json(path, *args):
    result = run_cli(["eval", str(path), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.option("committee", "--out")
@pytest.mark.option("committee", "--json")
@pytest.mark.long
def test_a_committee_of_one_run_is_that_run_and_outlives_it(smoke_model, evaluated, tmp_path):
    run, out = tmp_path / "run", tmp_path / "committee"
    shutil.copytree(smoke_model, run)
    manifest = make([run], out)
    assert [m["checkpoint"] for m in manifest["members"]] == [
        str(out / "members" / "0" / "checkpoint.npz")
    ]
    shutil.rmtree(run)  # the committee holds a copy of the member's checkpoint
    alone, together = evaluated(smoke_model), eval_json(out)
    assert together["accuracy"] == alone.accuracy and together["count"] == alone.count
    assert together["loss"] == pytest.approx(alone.loss, rel=1e-5)  # NLL of the softmax
    assert together["confusion"] == alone.to_dict()["confusion"]
    (member,) = together["members"]
    assert (member["accuracy"], member["loss"]) == (alone.accuracy, alone.loss)
    images = alone.images[:64]
    np.testing.assert_array_equal(api.predict(out, images), api.predict(smoke_model, images))


def test_a_committee_of_a_run_with_itself_is_that_run(smoke_model, evaluated, tmp_path):
    out = tmp_path / "committee"
    make([smoke_model, smoke_model], out)
    alone, twice = evaluated(smoke_model), api.evaluate(out, **QUIET)
    np.testing.assert_array_equal(twice.probabilities, alone.probabilities)
    assert twice.accuracy == alone.accuracy
    assert twice.loss == pytest.approx(alone.loss, rel=1e-5)
    assert [m.accuracy for m in twice.members] == [alone.accuracy] * 2


@pytest.mark.long
def test_each_member_standardises_the_pixels_its_own_way(smoke_model, scaled, mixed, evaluated):
    members = [checkpoint.load(run).config.input_norm for run in (smoke_model, scaled)]
    assert members == ["standardize", "scale"]
    own = [evaluated(run) for run in (smoke_model, scaled)]
    result = evaluated(mixed)
    np.testing.assert_array_equal(result.labels, own[0].labels)
    np.testing.assert_allclose(
        result.probabilities, (own[0].probabilities + own[1].probabilities) / 2, atol=1e-12
    )
    assert not np.allclose(own[0].probabilities, own[1].probabilities, atol=1e-2)
    assert result.accuracy == np.mean(result.probabilities.argmax(axis=1) == result.labels)
    assert [(m.accuracy, m.loss) for m in result.members] == [(e.accuracy, e.loss) for e in own]
    images = result.images[:100]
    np.testing.assert_allclose(
        api.predict(mixed, images),
        (api.predict(smoke_model, images) + api.predict(scaled, images)) / 2,
        atol=1e-6,
    )
    text = run_cli(["eval", str(mixed), "--mistakes", "0"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert "committee of 2, mean-probs" in lines[0] and f"{result.accuracy:.2%}" in lines[0]
    assert lines[1].startswith("  member 0  accuracy") and lines[2].startswith("  member 1")


def saved(path, **changes):
    """A checkpoint of zero weights for the smoke config with `changes` (no training)."""
    config = load_config(SMOKE).replace(**changes)
    sizes = architecture.layer_sizes(config)
    params = [
        {"w": np.zeros((a, b), np.float32), "b": np.zeros(b, np.float32)}
        for a, b in zip(sizes[:-1], sizes[1:])
    ]
    checkpoint.save(path, params, [], config, 1, dataset="made")
    return path


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"input_size": 1024}, "the first takes 784 pixels per image, the second takes 1024"),
        ({"num_classes": 26}, "the first has 10 classes, the second has 26"),
    ],
)
def test_members_of_another_input_size_or_classes_are_one_line(
    smoke_model, tmp_path, changes, says
):
    other = saved(tmp_path / "other", **changes)
    out = tmp_path / "committee"
    result = run_cli(["committee", str(smoke_model), str(other), "--out", str(out)])
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert says in line and str(smoke_model) in line and str(other) in line
    assert not out.exists()


def test_validation_figures_need_members_that_held_out_the_same_images(tmp_path):
    # seeds 0 and 1 each hold out images of their own; one data_seed makes them hold out the same
    own = [saved(tmp_path / f"own{s}", seed=s, input_norm="scale") for s in (0, 1)]
    shared = [
        saved(tmp_path / f"shared{s}", seed=s, data_seed=0, input_norm="scale") for s in (0, 1)
    ]
    for runs, name in ((own, "own"), (shared, "shared")):
        make(runs, tmp_path / name)
    refused = run_cli(["eval", str(tmp_path / "own"), "--split", "validation"])
    assert refused.exit_code == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert "held out other validation images" in line and "split seed 1 against 0" in line
    assert eval_json(tmp_path / "own")["split"] == "test"  # the test split is everyone's
    together = api.evaluate(tmp_path / "shared", "validation", **QUIET)
    second = api.evaluate(shared[1], "validation", **QUIET)
    np.testing.assert_array_equal(together.labels, second.labels)
    assert not np.array_equal(second.labels, api.evaluate(own[1], "validation", **QUIET).labels)


@pytest.mark.long
def test_a_committee_member_an_used_out_or_a_damaged_manifest_are_one_line(
    smoke_model, mixed, tmp_path
):
    cases = [
        (["committee", str(mixed), "--out", str(tmp_path / "c")], "is a committee"),
        (["committee", str(smoke_model), "--out", str(smoke_model)], "already holds a run"),
        (["committee", str(smoke_model), "--out", str(mixed)], "already holds a run"),
        (["theta", "export", str(mixed), "--out", str(tmp_path / "t")], "members/0"),
    ]
    hostile = tmp_path / "hostile"
    shutil.copytree(mixed, hostile)
    manifest = json.loads((hostile / committee.MANIFEST).read_text())
    manifest["members"][1]["checkpoint"] = "../../run/checkpoint.npz"
    (hostile / committee.MANIFEST).write_text(json.dumps(manifest))
    cases.append((["eval", str(hostile)], "must be a path inside the committee folder"))
    for args, says in cases:
        result = run_cli(args)
        assert result.exit_code == 2, args
        (line,) = result.stderr.splitlines()
        assert says in line, (args, line)
    assert not (tmp_path / "c").exists() and not (tmp_path / "t").exists()


def test_the_onnx_committee_is_one_graph_giving_evals_probabilities(mixed, evaluated, tmp_path):
    out = tmp_path / "committee.onnx"
    result = run_cli(["export", str(mixed), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == 4 and ops.count("Mean") == 1 and ops[-1] == "Mean"
    names = {init.name for init in model.graph.initializer}
    assert {"members.0.layers.0.w", "members.1.layers.1.b"} <= names
    props = json.loads({p.key: p.value for p in model.metadata_props}["mnist_jax.committee"])
    assert [c["input_norm"] for c in props["configs"]] == ["standardize", "scale"]
    expected = evaluated(mixed)
    probs = onnx_probabilities(out, expected.images)
    assert len(probs) == 2000  # every test image of the bundled sample
    np.testing.assert_array_equal(probs.argmax(axis=1), expected.probabilities.argmax(axis=1))
    np.testing.assert_allclose(probs, expected.probabilities, rtol=0, atol=1e-5)


def test_safetensors_export_of_a_committee_is_refused_in_one_line(mixed, tmp_path):
    out = tmp_path / "committee.safetensors"
    result = run_cli(["export", str(mixed), "--format", "safetensors", "--out", str(out)])
    assert result.exit_code == 2 and not out.exists()
    (line,) = result.stderr.splitlines()
    assert "is a committee" in line and "--format onnx" in line


@pytest.mark.long
def test_predict_and_serve_answer_with_the_committees_digits(mixed, smoke_model, tmp_path):
    digit, _ = confident_digit(smoke_model)
    images = np.stack([digit, 255 - digit, np.roll(digit, 3, axis=1)])
    np.save(tmp_path / "digits.npy", images)
    result = run_cli(["predict", str(mixed), str(tmp_path / "digits.npy"), "--json"])
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)
    expected = api.predict(mixed, np.stack([preprocess.to_mnist(i / 255) for i in images]))
    assert [a["digit"] for a in answers] == list(expected.argmax(axis=1))
    np.testing.assert_allclose([a["probabilities"] for a in answers], expected, atol=1e-6)
    status, answer = post_canvas(mixed, digit)  # the in-process server, as `serve` loads it
    assert status == 200 and answer["digit"] == answers[0]["digit"]
    np.testing.assert_allclose(answer["probabilities"], expected[0], atol=1e-6)
