"The docs build as far as it runs without Quarto, and the invariant that notebooks and modules agree."
import filecmp, json, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS = sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb"))

def _copy(tmp_path: Path) -> Path:
    "A scratch copy of what nbdev reads, so the checks leave the checkout untouched"
    dst = tmp_path / "repo"
    dst.mkdir()
    for f in ("settings.ini", "_quarto.yml", "README.md", "setup.py"): shutil.copy(ROOT / f, dst / f)
    shutil.copytree(ROOT / "nbs", dst / "nbs", symlinks=True, ignore=shutil.ignore_patterns("_proc", ".ipynb_checkpoints"))
    shutil.copytree(ROOT / "trading_nb", dst / "trading_nb", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dst

def test_quarto_yml_is_one_file():
    assert (ROOT / "nbs" / "_quarto.yml").resolve() == (ROOT / "_quarto.yml").resolve()

def test_nbdev_export_leaves_no_diff(tmp_path):
    repo = _copy(tmp_path)
    subprocess.run([sys.executable, "-c", "from nbdev.doclinks import nbdev_export; nbdev_export.__wrapped__()"],
                   cwd=repo, check=True, capture_output=True, text=True)
    mods = sorted(p.name for p in (ROOT / "trading_nb").glob("*.py"))
    assert mods == sorted(p.name for p in (repo / "trading_nb").glob("*.py"))
    _, mismatch, errors = filecmp.cmpfiles(ROOT / "trading_nb", repo / "trading_nb", mods, shallow=False)
    assert not mismatch and not errors, f"run nbdev_export and commit: {mismatch + errors} differ from the notebooks"

def test_notebooks_are_clean_and_in_run_order():
    for name in NBS:
        nb = json.loads((ROOT / "nbs" / name).read_text())
        counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
        assert counts == sorted(counts), f"{name}: cells were not run top to bottom"
        assert (ROOT / "nbs" / name).stat().st_size < 3_000_000, f"{name}: saved outputs are too large"
        text = (ROOT / "nbs" / name).read_text()
        assert "/work/" not in text and "/home/" not in text, f"{name}: a saved output shows a local path"

def test_docs_processing_runs_without_quarto(tmp_path):
    "What `nbdev_proc_nbs` does, minus installing Quarto: it executes import, export and show_doc cells"
    repo = _copy(tmp_path)
    code = ("from nbdev.quarto import refresh_quarto_yml, nbdev_sidebar\n"
            "from nbdev.serve import proc_nbs\n"
            "refresh_quarto_yml(); nbdev_sidebar.__wrapped__(); proc_nbs(n_workers=1, force=True)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Found cells containing imports and other code" not in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    proc = repo / "_proc"
    for name in NBS:
        nb = json.loads((proc / name).read_text())
        docs = [c for c in nb["cells"] if "show_doc(" in "".join(c["source"])]
        if name != "index.ipynb": assert docs, f"{name}: no API documentation was rendered"
        for c in docs:
            md = [o for o in c.get("outputs", []) if "text/markdown" in o.get("data", {})]
            assert md, f"{name}: {''.join(c['source'])!r} rendered nothing"
    sidebar = (repo / "nbs" / "sidebar.yml").read_text()
    assert all(n in sidebar for n in NBS if n != "index.ipynb")
