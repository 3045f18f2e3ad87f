"""Every notebook in examples/ is stored without outputs, runs top to bottom, installs from the
checkout (the registry's "tmac" is another package) and reports what it measured, not a claim."""

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_outputs_are_stripped(path):
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS + [ROOT / "README.md", ROOT / "docs" / "index.md"],
                         ids=lambda p: p.stem)
def test_install_hints_name_the_checkout(path):
    text = path.read_text()
    for wrong in ('pip install "tmac[', "pip install 'tmac[", "pip install tmac[", "pip install tmac "):
        assert wrong not in text, (path.name, wrong)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    if "real_model" in path.stem:
        fetch = pytest.importorskip("tmac.model.fetch")
        if not fetch.is_fetched("smollm2"):
            pytest.skip("SmolLM2 not fetched (run: tmac fetch smollm2)")
    nbformat = pytest.importorskip("nbformat", reason="the 'notebooks' extra is not installed")
    nbclient = pytest.importorskip("nbclient", reason="the 'notebooks' extra is not installed")
    monkeypatch.setenv("TMAC_NOTEBOOK_SIZE", "512")          # small matrices keep CI quick
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors
    if "bits_speed" in path.stem:          # the claim is measured and stated, never assumed
        last = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
        assert last.startswith("measured here, 512 x 512: 1-bit took "), last
