"""examples/gpu_runtime.ipynb: stored without outputs, and runs headless on the CPU, offline."""

import json

import nbclient
import nbformat

from tests.conftest import ROOT

NOTEBOOK = ROOT / "examples" / "gpu_runtime.ipynb"


def test_notebook_is_stored_without_outputs():
    notebook = json.loads(NOTEBOOK.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_notebook_runs_headless_on_the_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("MNIST_JAX_TENSORBOARD_INLINE", "off")  # no TensorBoard server
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = 'CONFIG = "smoke"\nOVERRIDES = {"epochs": 2}'  # the bundled sample
    nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
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
