"""The memory plan's GPU branch, with an injected device whose memory statistics are known."""

import pytest

from mnist_jax.config import load_config
from mnist_jax.errors import MnistJaxError
from mnist_jax.limits import available_host_bytes, size_text
from mnist_jax.training import memory
from tests.conftest import SMOKE

GB = 2**30
SIZES = {"train": 60_000, "validation": 0, "test": 10_000}


class FakeGpu:
    """A device as JAX shows a GPU: a platform and `memory_stats()` (or a failing one)."""

    platform = "gpu"

    def __init__(self, stats=None, error=None):
        self.stats, self.error = stats, error

    def memory_stats(self):
        if self.error is not None:
            raise self.error
        return self.stats

    def __str__(self):
        return "cuda:0"


def test_a_gpu_offers_its_limit_less_what_is_in_use():
    device = FakeGpu({"bytes_limit": 8 * GB, "bytes_in_use": 3 * GB})
    assert memory.device_offer(device) == (5 * GB, "cuda:0 limit")
    plan = memory.plan(load_config(SMOKE), SIZES, device)
    assert plan.offer == 5 * GB and plan.source == "cuda:0 limit" and plan.fits
    assert memory.check(plan) is plan
    assert plan.to_dict()["available_from"] == "cuda:0 limit"


def test_a_run_larger_than_the_gpu_limit_is_one_line_naming_the_gpu():
    config = load_config(SMOKE).replace(hidden=[4096, 4096])
    device = FakeGpu({"bytes_limit": 512 * 2**20, "bytes_in_use": 256 * 2**20})
    plan = memory.plan(config, SIZES, device)
    assert plan.offer == 256 * 2**20 and not plan.fits
    with pytest.raises(MnistJaxError) as error:
        memory.check(plan)
    message = str(error.value)
    assert "\n" not in message
    assert f"cuda:0 offers {size_text(256 * 2**20)} (cuda:0 limit)" in message


@pytest.mark.parametrize(
    "device",
    [FakeGpu(error=RuntimeError("no statistics")), FakeGpu(None), FakeGpu({"bytes_in_use": 1})],
    ids=["raises", "none", "no-limit"],
)
def test_a_gpu_without_statistics_falls_back_to_the_host(device):
    offer, source = memory.device_offer(device)
    assert source == "host memory available"
    assert abs(offer - available_host_bytes()) < GB  # read again: other processes move it
