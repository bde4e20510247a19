"""The example notebooks run top to bottom (nbclient, a real Jupyter kernel) and are stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
#: Settings made smaller for the test (every cell still runs): notebook → {text: replacement}.
QUICK = {
    "cryo04_denmark_strait": {"N_SCENES = 6 ": "N_SCENES = 3 ", '"resolution_m": 800,': '"resolution_m": 1600,'},
    "cluster_pipeline": {"n_scenes=4)": "n_scenes=3)"},
}


def _quick(nb, name: str) -> None:
    """Apply :data:`QUICK` to the code cells; each text must occur once (else the notebook changed)."""
    for old, new in QUICK.get(name, {}).items():
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1 and cells[0].source.count(old) == 1, f"{name}: {old!r} is not in one cell once"
        cells[0].source = cells[0].source.replace(old, new)


def test_the_notebooks_are_there_and_stored_without_outputs():
    assert {p.name for p in NOTEBOOKS} >= {"cryo04_denmark_strait.ipynb", "cluster_pipeline.ipynb"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)  # the notebooks start their own cluster
    monkeypatch.setenv("SEAICE_EXAMPLES_OUTPUT", str(tmp_path / "out"))  # their scratch folder
    before = sorted(EXAMPLES.rglob("*"))
    nb = nbformat.read(path, as_version=4)
    _quick(nb, path.stem)
    # run from the examples folder, as Jupyter does: outputs must still land in the scratch folder
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert list((tmp_path / "out").rglob("index.html")), "the pipeline did not reach the report"
    assert sorted(EXAMPLES.rglob("*")) == before, "the notebook wrote into the source tree"
