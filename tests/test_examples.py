"""examples/gpu_runtime.ipynb: stored without outputs, runs headless on the CPU, offline, and
installs the mnist-jax that sits with it (a checkout, a wheel), never one found by name."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbclient
import nbformat
import pytest

from mnist_jax import __version__
from tests.conftest import ROOT

NOTEBOOK = ROOT / "examples" / "gpu_runtime.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.long  # a whole notebook in a kernel, minutes: `make test-long`
def test_notebook_runs_headless_on_the_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("MNIST_JAX_TENSORBOARD_INLINE", "off")  # no TensorBoard server
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = 'CONFIG = "smoke"\nOVERRIDES = {"epochs": 2}'  # the bundled sample
    nbclient.NotebookClient(  # the timeout guards against a hang; a slow machine is not one
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()

    def text(index: int) -> str:
        return "".join(o.get("text", "") for o in notebook.cells[index].outputs)

    code = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]
    (board,) = [i for i in code if "tensorboard" in notebook.cells[i].metadata.get("tags", [])]
    install, _, devices, train, curves, gradcheck, predict = [i for i in code if i != board]
    assert "already installed: nothing to do" in text(install)  # pip was never run
    assert "backend cpu" in text(devices)
    assert "epoch 2/2" in text(train) and "test accuracy" in text(train)
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[curves].outputs)
    assert text(gradcheck).rstrip().endswith("passed")
    assert any("image/png" in o.get("data", {}) for o in notebook.cells[predict].outputs)
    assert "predicted:" in text(predict)
    # TensorBoard's extension loaded, its inline server skipped, and the run has its events
    assert "TensorBoard events go to runs/notebook; the inline view is off" in text(board)
    assert list((tmp_path / "runs" / "notebook").glob("events.out.tfevents.*"))


# --- what the install cell installs, in a kernel without mnist-jax


@pytest.fixture(scope="session")
def packages_but_mnist_jax(tmp_path_factory) -> Path:
    """A folder of links to this environment's packages (JAX, pip, ipykernel...) but mnist-jax."""
    folder = tmp_path_factory.mktemp("site")
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "mnist_jax" not in entry.name and entry.suffix != ".pth":
            (folder / entry.name).symlink_to(entry)
    return folder


@pytest.fixture
def bare_kernel(tmp_path, packages_but_mnist_jax, monkeypatch) -> Path:
    """Kernel "bare": a throwaway venv that sees this environment's packages but mnist-jax and
    installs into its own site-packages, which is returned."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    (site / "packages.pth").write_text(f"{packages_but_mnist_jax}\n")
    spec = tmp_path / "jupyter" / "kernels" / "bare"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.delenv("PYTHONPATH", raising=False)
    return site


@pytest.fixture(scope="session")
def clone(tmp_path_factory) -> Path:
    """A fresh clone of this repository (its last commit)."""
    target = tmp_path_factory.mktemp("clone") / "mnist-jax"
    subprocess.run(["git", "clone", "--quiet", ROOT, target], check=True)
    return target


def run_install(folder: Path, source: str = "") -> tuple[list[nbformat.NotebookNode], bool]:
    """Run the install cell, then a cell that imports mnist_jax and prints from where, in kernel
    "bare" with `folder` as the working folder and SOURCE set to `source`.

    Returns:
        (the two cells with their outputs, whether a cell stopped the run with an error)
    """
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    install = next(c for c in notebook.cells if c.cell_type == "code")
    assert 'SOURCE = ""' in install.source
    install.source = install.source.replace('SOURCE = ""', f"SOURCE = {source!r}")
    probe = nbformat.v4.new_code_cell(
        "import mnist_jax\nprint('imported', mnist_jax.__version__, 'from', mnist_jax.__file__)"
    )
    notebook.cells = [install, probe]
    client = nbclient.NotebookClient(
        notebook, timeout=1800, kernel_name="bare", resources={"metadata": {"path": folder}}
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError:
        return notebook.cells, True
    return notebook.cells, False


def outputs(cell: nbformat.NotebookNode, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == name)


@pytest.mark.long  # a whole notebook in a kernel, minutes: `make test-long`
def test_notebook_in_a_fresh_clone_installs_that_checkout(clone, bare_kernel):
    (install, probe), stopped = run_install(clone / "examples")
    assert not stopped, outputs(install, "stderr")
    assert f"installing mnist-jax from {clone.as_uri()}\n" in outputs(install)
    # the installed copy, not the clone's folder or this checkout's
    assert outputs(probe).startswith(f"imported {__version__} from {bare_kernel}/mnist_jax/")


@pytest.mark.long
def test_notebook_next_to_a_wheel_installs_that_wheel(built_wheel, tmp_path, bare_kernel):
    folder = tmp_path / "uploaded"
    folder.mkdir()
    shutil.copy(built_wheel, folder)
    (install, probe), stopped = run_install(folder)
    assert not stopped, outputs(install, "stderr")
    assert f"installing mnist-jax from {(folder / built_wheel.name).as_uri()}\n" in outputs(install)
    assert outputs(probe).startswith(f"imported {__version__} from {bare_kernel}/mnist_jax/")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "no mnist-jax to install: upload a wheel (`make wheel`"),
        ("mnist-jax", "SOURCE = 'mnist-jax' is no file here"),  # a bare name, not opted in
    ],
)
def test_notebook_with_nothing_to_install_stops_with_one_line(
    tmp_path, bare_kernel, source, message
):
    (install, probe), stopped = run_install(tmp_path, source)
    assert stopped and probe.outputs == []  # nothing after it ran
    assert [o.output_type for o in install.outputs] == ["stream"]  # no traceback
    assert outputs(install) == "" and outputs(install, "stderr").count("\n") == 1
    assert outputs(install, "stderr").startswith(message)
    assert not (bare_kernel / "mnist_jax").exists()  # pip installed nothing
