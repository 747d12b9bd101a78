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

def test_docs_processing_runs_without_quarto(docs_build):
    "What `nbdev_proc_nbs` does, minus installing Quarto: it executes import, export and show_doc cells (tools/build-docs step 1)"
    site, work, r = docs_build
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    repo = work / "repo"
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

def _front_matter(proc: Path, name: str) -> dict:
    import re, yaml
    first = json.loads((proc / name).read_text())["cells"][0]
    return yaml.safe_load(re.match(r"^---\n(.*?)\n---", "".join(first["source"]).strip(), re.S)[1])

def _text(html: str) -> str:
    import re
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", html, flags=re.S)))

def test_site_builds_offline_and_its_links_resolve(docs_build):
    "The site builds without Quarto or a network, and its own offline link check (tools/build-docs step 4) passes"
    site, work, r = docs_build
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "links checked offline" in r.stdout and "broken" not in r.stderr, r.stderr[-3000:]
    for f in ("index.html", "search.html", "searchindex.js", "_static/plotly.min.js"): assert (site / f).exists(), f
    import plotly
    assert (site / "_static/plotly.min.js").read_bytes() == (Path(plotly.__file__).parent / "package_data/plotly.min.js").read_bytes()
    for f in site.glob("*.html"):
        html = f.read_text()
        assert "cdn.plot.ly" not in html and "mathjax" not in html.lower(), f"{f.name} would load scripts from the internet"

def test_site_pages_read_as_on_quarto(docs_build):
    "Title and description from nbdev's front matter, show_doc entries as headings with nbdev's anchors, no Quarto syntax as text"
    import re
    site, work, r = docs_build
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    proc = work / "repo" / "_proc"
    nav = re.search(r'<nav class="bd-links bd-docs-nav".*?</nav>', (site / "search.html").read_text(), re.S)[0]   # no page is current there
    for name in NBS:
        fm = _front_matter(proc, name)
        page = Path(fm["output-file"]).stem
        html = (site / f"{page}.html").read_text()
        text = _text(html)
        h1 = re.findall(r"<h1>([^<]*)<a class=\"headerlink\"", html)
        assert h1 and _text(h1[0]).strip() == fm["title"], (name, h1[:1], fm["title"])
        if fm.get("description"):
            assert '<p class="description">' in html, f"{page}: no description under the title"
        assert f'href="{page}.html"' in nav, f"{page} is not in the navigation"
        assert "{target=" not in text and "{.description}" not in text and "#| " not in text, f"{page}: Quarto syntax shown as text"
        assert "VBox(children" not in text and "HBox(children" not in text, f"{page}: a widget shown as its Python repr"
        nb = json.loads((proc / name).read_text())
        for c in nb["cells"]:
            if "show_doc(" not in "".join(c["source"]): continue
            for o in c.get("outputs", []):
                for h in re.findall(r"^#{2,4} (\S+)", "".join(o.get("data", {}).get("text/markdown", "")), re.M):
                    assert re.search(rf"<h[2-4]>{re.escape(h)}<a class=\"headerlink\"", html), f"{page}: show_doc {h} is not a heading"
                    assert f'id="{h.lower()}"' in html, f"{page}: no anchor #{h.lower()} for nbdev's links to {h}"
        if nb_has_plotly(nb):
            assert 'src="_static/plotly.min.js"' in html and "plotly-graph-div" in html, f"{page}: plotly charts are not drawn from the site"
    dataset = (site / "dataset.html").read_text()
    assert "<h3>TradingDataset.__getitems__<a" in dataset, "dunder names must not turn bold"
    assert re.search(r'href="dataset.html#tradingdataset"', (site / "evaluate.html").read_text()), "links to symbols on other pages"

def nb_has_plotly(nb: dict) -> bool:
    return any("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))
