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
        exports = '#| default_exp' in (ROOT / "nbs" / name).read_text()   # a study notebook (06b_panel_study) exports nothing
        if exports: assert docs, f"{name}: no API documentation was rendered"
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
    cross = [m for f in site.glob("*.html") for m in re.findall(r'class="reference internal" href="(\w+)\.html#([\w.]+)"', f.read_text())
             if m[0] != f.stem]
    assert len(cross) > 10, f"nbdev's links to symbols on other pages are missing: {cross}"   # and the link check found them all

def nb_has_plotly(nb: dict) -> bool:
    return any("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))

def _build_docs_module():
    import importlib.machinery, importlib.util
    loader = importlib.machinery.SourceFileLoader("build_docs", str(ROOT / "tools" / "build-docs"))
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("build_docs", loader))
    loader.exec_module(mod)
    return mod

def test_translation_of_what_quarto_reads_differently(tmp_path):
    "tools/build-docs step 2 on a small processed notebook: front matter, show_doc, Quarto attributes, dunders, links, plotly, widgets"
    from docutils.nodes import make_id
    bd = _build_docs_module()
    cell = lambda kind, src, **kw: dict(cell_type=kind, source=src, metadata={}, **kw)
    site = "https://trading-nb.github.io/trading_nb/"
    doc = ("---\n\n[source](https://github.com/x/y.py#L1){target=\"_blank\" style=\"float:right; font-size:smaller\"}\n\n"
           "### TradingDataset.__len__\n\n```python\n\ndef __len__(\n    \n):\n\n\n```\n\n*Number of windows*")
    fig = {"data": [{"type": "scatter", "y": [1, 2]}], "layout": {"height": 300}}
    nb = {"cells": [
        cell("raw", "---\ndescription: 'Windows: `lookback` bars'\noutput-file: dataset.html\ntitle: Dataset\n---\n"),
        cell("markdown", "<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->"),
        cell("markdown", f"See [`load_ohlcv`]({site}data.html#load_ohlcv), [`_private`]({site}data.html#_private), "
                         f"`__getitems__` and __len__, [the notes](01_features.ipynb#warm-up) and [a file](settings.ini)."),
        cell("code", "#| echo: false\n#| output: asis\nshow_doc(TradingDataset.__len__)",
             outputs=[{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": doc}}], execution_count=1),
        cell("code", "fig.show()", execution_count=2, outputs=[
            {"output_type": "display_data", "metadata": {}, "data": {"text/html": '<script type="module">import "https://cdn.plot.ly/plotly-4.1.1.min"</script>'}},
            {"output_type": "display_data", "metadata": {}, "data": {"application/vnd.plotly.v1+json": fig, "text/html": "<div>cdn</div>"}}]),
        cell("code", "explorer", execution_count=3, outputs=[{"output_type": "execute_result", "metadata": {}, "execution_count": 3, "data": {
            "application/vnd.jupyter.widget-view+json": {"model_id": "x"}, "text/plain": "VBox(children=(HBox(children=..."}}]),
        cell("code", "explorer_with_fallback", execution_count=4, outputs=[{"output_type": "execute_result", "metadata": {}, "execution_count": 4, "data": {
            "application/vnd.jupyter.widget-view+json": {"model_id": "y"}, "application/vnd.plotly.v1+json": fig, "text/plain": "<Explorer>"}}]),
    ]}
    proc = tmp_path / "_proc"; proc.mkdir()
    (proc / "03_dataset.ipynb").write_text(json.dumps(nb))
    (proc / "01_features.ipynb").write_text(json.dumps({"cells": [cell("raw", "---\noutput-file: features.html\ntitle: Features\n---\n")]}))
    (proc / "00_data.ipynb").write_text(json.dumps({"cells": [cell("raw", "---\noutput-file: data.html\ntitle: Data\n---\n")]}))
    pages = bd.Pages(proc, ["03_dataset.ipynb", "01_features.ipynb", "00_data.ipynb"])
    out = bd.translate(nb, "dataset", pages, "nbs", make_id)
    md = ["".join(c["source"]) for c in out["cells"] if c["cell_type"] == "markdown"]
    assert md[0].startswith("# Dataset\n") and "{.description}\nWindows: `lookback` bars" in md[0]
    assert not any("AUTOGENERATED" in m for m in md)
    text = md[1]
    assert '<a class="reference internal" href="data.html#load_ohlcv"><code>load_ohlcv</code></a>' in text
    assert "`_private`" in text and "#_private" not in text            # nbdev links private names; they have no entry
    assert "`__getitems__`" in text and r"\_\_len\_\_" in text          # code spans untouched, bare dunders escaped
    assert 'href="features.html#warm-up"' in text and "https://github.com/trading-nb/trading_nb/blob/main/settings.ini" in text
    entry = md[2]
    assert "{target=" not in entry and not entry.startswith("---") and "{.nbdev-source}\n[source](https://github.com/x/y.py#L1)" in entry
    assert r"### TradingDataset.\_\_len\_\_" in entry and '<span id="tradingdataset.__len__"></span>' in entry
    assert "```python\ndef __len__(" in entry and "):\n```" in entry
    code = [c for c in out["cells"] if c["cell_type"] == "code"]
    assert all(c["metadata"] == {} for c in code) and [c["source"] for c in code][0] == "fig.show()"
    plots = code[0]["outputs"]
    assert len(plots) == 1 and set(plots[0]["data"]) == {"text/html"}   # the CDN loader is gone, the figure drawn by the site's plotly.js
    assert plots[0]["data"]["text/html"].startswith('<script src="_static/plotly.min.js"></script>') and "Plotly.newPlot" in plots[0]["data"]["text/html"]
    assert code[1]["outputs"][0]["data"] == {"text/markdown": bd.NOTE}    # a widget without a fallback: a note, not its repr
    fallback = code[2]["outputs"][0]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in fallback and "Plotly.newPlot" in fallback["text/html"]
    assert "_static/plotly.min.js" not in fallback["text/html"]          # loaded once per page
