import io
import json
import zipfile

import numpy as np
import pytest

from mnist_jax import architecture
from mnist_jax.config import Config
from mnist_jax.errors import CheckpointError
from mnist_jax.records import checkpoint

CONFIG = Config(hidden=(4,))


def params_for(config):
    sizes = architecture.layer_sizes(config)
    rng = np.random.default_rng(0)
    return [
        {
            "w": rng.normal(size=(a, b)).astype(np.float32),
            "b": rng.normal(size=b).astype(np.float32),
        }
        for a, b in zip(sizes[:-1], sizes[1:])
    ]


def test_round_trip_keeps_every_array_and_the_config(tmp_path):
    params = params_for(CONFIG)
    opt = [np.int32(7), np.ones((3, 2), np.float32)]
    checkpoint.save(tmp_path, params, opt, CONFIG, epoch=3, dataset="mnist")
    loaded = checkpoint.load(tmp_path)
    assert loaded.config == CONFIG and loaded.epoch == 3 and loaded.meta["dataset"] == "mnist"
    for a, b in zip(params, loaded.params, strict=True):
        assert a.keys() == b.keys()  # weights and biases alike
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_array_equal(loaded.opt_leaves[1], opt[1])
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_truncated_and_foreign_files_are_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nothing")
    checkpoint.save(tmp_path, params_for(CONFIG), [], CONFIG, epoch=1)
    path = tmp_path / checkpoint.FILE_NAME
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        checkpoint.load(path)
    path.write_text("hello")
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_architecture_mismatch_names_the_shape(tmp_path):
    checkpoint.save(tmp_path, params_for(CONFIG), [], CONFIG, epoch=1)
    with pytest.raises(CheckpointError, match=r"layer 0 w has shape \(784, 4\).*\(784, 8\)"):
        checkpoint.check_shapes(checkpoint.load(tmp_path).params, Config(hidden=(8,)), "ckpt")


def rewrite_meta(path, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta.update(changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


def test_newer_format_is_refused_with_advice(tmp_path):
    checkpoint.save(tmp_path, params_for(CONFIG), [], CONFIG, epoch=1)
    rewrite_meta(tmp_path / checkpoint.FILE_NAME, format_version=checkpoint.FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match="newer mnist-jax"):
        checkpoint.load(tmp_path)


def test_a_pickled_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint.save(tmp_path, params_for(CONFIG), [], CONFIG, epoch=1)
    path = tmp_path / checkpoint.FILE_NAME

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = io.BytesIO()
    np.save(evil, np.array([Exploit()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("opt/0.npy", evil.getvalue())
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("saved", "optimizer"),
    [
        ({"momentum": 0.9, "nesterov": True}, "nesterov"),
        ({"momentum": 0.9, "nesterov": False}, "momentum"),
        ({"momentum": 0.0, "nesterov": False}, "sgd"),
    ],
)
def test_a_config_saved_with_the_old_momentum_keys_is_read_as_the_same_optimizer(saved, optimizer):
    from mnist_jax.config import config_from_json

    old = {**Config(name="old").to_dict(), **saved}
    del old["optimizer"]
    config = config_from_json(json.dumps(old))
    assert config.optimizer == optimizer
    if optimizer != "sgd":
        assert config.momentum == 0.9


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov", "lbfgs"])
def test_the_expected_size_covers_the_optimisers_real_state(optimizer):
    import jax

    from mnist_jax.training import optim
    from mnist_jax.training.trainer import draw_state

    batch = "full" if optimizer == "lbfgs" else 64
    config = Config(hidden=(16,), optimizer=optimizer, batch_size=batch, schedule="cosine")
    params, state = draw_state(config, jax.random.key(0), optim.make_optimizer(config, 100))
    held = sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves((params, state)))
    expected = checkpoint.expected_bytes(config)
    assert expected <= held <= expected + checkpoint.EXTRA_BYTES  # only scalars left over


def test_arrays_beyond_what_the_config_keeps_are_refused_from_their_headers(tmp_path):
    params = params_for(CONFIG)  # 784-4-10 with plain SGD: no parameter-sized state
    checkpoint.save(tmp_path, params, [np.zeros((1000, 1000), np.float32)], CONFIG, epoch=1)
    with pytest.raises(CheckpointError, match=r"besides the parameters declare 4.0 MB \(opt/0"):
        checkpoint.load(tmp_path)
    checkpoint.save(tmp_path, params, [np.zeros((4, 4), np.float32)], CONFIG, epoch=1)
    assert checkpoint.load(tmp_path).opt_leaves[0].shape == (4, 4)  # small extras still load
