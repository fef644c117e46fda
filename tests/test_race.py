"""The race to a test accuracy: stops at the first epoch that reaches it, counting train seconds."""

import pytest

from mnist_jax import data
from mnist_jax.config import load_config
from mnist_jax.tools import race
from tests.conftest import SMOKE


@pytest.mark.long
def test_the_race_stops_at_the_first_epoch_at_the_target_and_runs_out_when_never():
    config = load_config(SMOKE).replace(epochs=3)
    splits = data.load(config, log=lambda _: None)
    unreached = race.seconds_to_accuracy(config, splits, target=1.01)
    assert unreached["reached"] is False and unreached["seconds"] is None
    assert [point[0] for point in unreached["curve"]] == [1, 2, 3]
    seconds = [point[1] for point in unreached["curve"]]
    assert 0 < seconds[0] < seconds[1] < seconds[2]  # cumulative train seconds

    second = unreached["curve"][1][2]  # the same seed trains the same: epoch 2's accuracy
    target = second if second > unreached["curve"][0][2] else 0.0
    hit = race.seconds_to_accuracy(config, splits, target=target)
    expected = 2 if target else 1
    assert hit["reached"] is True and hit["epoch"] == expected == hit["epochs"]
    assert hit["seconds"] == hit["curve"][-1][1] > 0
    assert len(hit["curve"]) == expected  # stopped there: no epoch after the target
