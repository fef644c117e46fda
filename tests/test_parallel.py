import json
import os
import subprocess
import sys
import textwrap

import pytest

from mnist_jax.devices import runtime
from mnist_jax.errors import MnistJaxError
from tests.conftest import ROOT, SMOKE

# XLA reads the fake device count when JAX starts, so the check runs in a fresh process.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from mnist_jax import api, data
    from mnist_jax.records import checkpoint
    from mnist_jax.training import trainer
    from mnist_jax.devices import runtime
    from mnist_jax.config import load_config

    config = load_config(sys.argv[1], {"epochs": 2, "train_size": 2048, "batch_size": 64})
    out = sys.argv[2]
    one = api.train(config, out + "/one", placement=jax.devices()[0], log=print).metrics
    four = api.train(
        config, out + "/four", placement=runtime.placement("cpu", 4), log=print
    ).metrics
    a, b = checkpoint.load(out + "/one"), checkpoint.load(out + "/four")
    diff = max(
        float(np.max(np.abs(x[k] - y[k]))) for x, y in zip(a.params, b.params) for k in x
    )
    # The epoch that ran really splits each batch: its program sums gradients across devices.
    run = trainer.build(config, data.load(config), runtime.placement("cpu", 4))
    state = run.init_state()
    text = run.train_epoch.lower(
        state.params, state.opt_state, run.data.train.x, run.data.train.y, run.epoch_key(0),
        run.put(np.int32(0)), num_steps=4,
    ).compile().as_text()
    print(json.dumps({
        "devices": len(jax.devices()), "diff": diff, "all_reduce": "all-reduce" in text,
        "loss": [one["test_loss"], four["test_loss"]],
        "accuracy": [one["test_accuracy"], four["test_accuracy"]],
    }))
    """
)


def on_fake_devices(script: str, count: int, *args: str) -> dict:
    """Run `script` (with `args`) in a fresh process that sees `count` CPU devices; return the
    JSON document its last line prints."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.long
def test_data_parallel_run_on_four_devices_equals_one_device(tmp_path):
    result = on_fake_devices(SCRIPT, 4, str(SMOKE), str(tmp_path))
    assert result["devices"] == 4
    assert result["all_reduce"]
    assert result["diff"] < 1e-4
    assert result["loss"][1] == pytest.approx(result["loss"][0], rel=1e-4)
    assert abs(result["accuracy"][1] - result["accuracy"][0]) <= 0.002


def test_placement_refuses_more_devices_than_visible():
    with pytest.raises(MnistJaxError, match="--devices 99"):
        runtime.placement("cpu", 99)


# Two fake CPU devices; `train` run as the console script runs it, once per way of asking for
# one device. Prints the device count and each run's reported device.
ONE_OF_TWO = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import jax
    from mnist_jax.cli.app import main

    common = ["train", "--config", sys.argv[1], "--epochs", "1", "--hidden", "8", "--json",
              "--no-progress"]
    reported = {}
    for name, ask in (("--devices 1", ["--devices", "1"]), ("default", [])):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main([*common, *ask, "--out", f"{sys.argv[2]}/{len(reported)}"]) == 0
        reported[name] = json.loads(out.getvalue())["device"]
    print(json.dumps({"devices": [str(d) for d in jax.devices()], "reported": reported}))
    """
)


@pytest.mark.option("train", "--devices")
@pytest.mark.long
def test_a_run_asking_for_one_device_trains_on_one_of_several(tmp_path):
    result = on_fake_devices(ONE_OF_TWO, 2, str(SMOKE), str(tmp_path))
    assert len(result["devices"]) == 2  # the machine has several
    for asked, device in result["reported"].items():
        assert device == result["devices"][0], f"{asked} trained on {device}"
