"""The example notebooks: stored without outputs, and run top to bottom on a real kernel.

The run is kept short with the notebook's own knobs (a few thousand training images, one epoch),
so the whole notebook takes well under a minute on one core while every cell still does its work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK = EXAMPLES / "mlp_vs_cnn.ipynb"
# What one cell may take at most: training the CNN is the longest, a few seconds here.
CELL_TIMEOUT_S = 120


def code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    """Outputs in git would be stale the moment the code changes, and bloat every diff."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert code_cells(notebook)
    for cell in code_cells(notebook):
        assert cell.outputs == [], cell.source[:60]
        assert cell.execution_count is None, cell.source[:60]
    assert notebook.metadata.kernelspec.name == "python3"


def test_mlp_vs_cnn_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGITS_NOTEBOOK_LIMIT", "3000")
    monkeypatch.setenv("DIGITS_NOTEBOOK_EPOCHS", "1")
    monkeypatch.setenv("DIGITS_NOTEBOOK_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    started = time.monotonic()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    elapsed = time.monotonic() - started

    outputs = [output for cell in code_cells(notebook) for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    # The sample grid, class balance, two learning curves, confusion matrix, the photo, what the
    # models saw, and the explanation.
    assert len(images) >= 8
    text = "".join(output.get("text", "") for output in outputs)
    tables = "".join(output.get("data", {}).get("text/markdown", "") for output in outputs)
    assert "| `ann` |" in tables
    assert "| `cnn` |" in tables
    assert "most confused" in text
    assert "integrated-gradients" in text

    # Both runs were trained as asked and finished, and learnt far above chance (10 %).
    runs = tmp_path / "runs"
    for name in ("ann", "cnn"):
        run_dir = runs / f"{name}-1ep-3000"
        assert (run_dir / "finished.json").exists()
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] > 0.6, (name, metrics["test"]["accuracy"])
    assert (runs / "why-cnn.png").stat().st_size > 0
    # A learner's machine is slower than none of ours; this keeps the example quick to rerun.
    assert elapsed < 90, f"the notebook took {elapsed:.0f} s"
