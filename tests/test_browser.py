"""What people look at, in a real browser: the docs site, the indicator explorer in JupyterLab, a training report.

Headless Debian `chromium` driven by Playwright (no browser download). Every page is served from 127.0.0.1 and every
other request is refused and reported, so each check also proves that the page works offline. Screenshots of each step
go to tests/artifacts/browser/<test>/ (printed when a test fails). Without chromium the tests are skipped with a
one-line reason, unless TRADING_NB_BROWSER_TESTS=required (set by .ci/run), where that is a failure.
"""
import functools, json, os, re, secrets, shutil, signal, socket, subprocess, sys, threading, time, urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / 'tests' / 'artifacts' / 'browser'
CHROMIUM = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
REQUIRED = os.environ.get('TRADING_NB_BROWSER_TESTS') == 'required'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
        '--disable-sync', '--no-first-run', '--disable-default-apps', '--disable-extensions']
TIMEOUT_MS = 60_000   # the longest any one browser step may wait

# Console errors that are not failures, each with its reason: {name: regex matched against the message}. None is needed
# today: the one the docs theme logged ("Got invalid theme mode: ." from pydata-sphinx-theme when no mode is stored) is
# fixed at its source (docs/conf.py sets default_mode), and JupyterLab 4 with the explorer logs none. Add an entry only
# with its reason; everything else fails the test.
HARMLESS: dict[str, re.Pattern] = {}
# Opened from disk (file://), Sphinx's search lists its results but then fetch()es each result page for an excerpt, which
# browsers refuse on file:// (CORS): the results show without excerpts and the console logs the refusals. Over http the
# excerpts are there and nothing is logged (test_docs_site checks both); html_show_search_summary=False would drop them everywhere.
FROM_DISK = {'search excerpts from file://': re.compile(
    r"Access to fetch at 'file://[^']*\.html' from origin 'null' has been blocked by CORS policy"
    r"|Failed to load resource: net::ERR_FAILED \(file://[^)]*\.html\)|^page error: Failed to fetch$")}

# ---------------------------------------------------------------- the browser
@pytest.fixture(scope='module')
def browser():
    missing = None if CHROMIUM else 'chromium is not installed (Debian/Ubuntu: apt-get install chromium)'
    try: from playwright.sync_api import sync_playwright
    except ImportError: missing = 'playwright is not installed (make setup installs the dev requirements)'
    if missing:
        if REQUIRED: pytest.fail(f'browser tests are required here (TRADING_NB_BROWSER_TESTS=required) but {missing}')
        pytest.skip(f'browser tests: {missing}')
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=TIMEOUT_MS)
        yield b
        b.close()

class Page:
    "A Playwright page that refuses anything off 127.0.0.1, records console errors, and screenshots numbered steps"
    def __init__(self, browser, shots: 'Shots', origin: str, harmless: dict):
        self.page = browser.new_page(viewport={'width': 1400, 'height': 1000})
        self.page.set_default_timeout(TIMEOUT_MS)
        self.folder, self.origin, self.harmless, self.n = shots.folder, origin, harmless, 0
        shots.pages.append(self)
        self.errors, self.external, self.allowed = [], [], set()
        self.page.on('console', lambda m: m.type == 'error' and self._error(f'console: {m.text} ({m.location.get("url", "")})'))
        self.page.on('pageerror', lambda e: self._error(f'page error: {e}'))
        self.page.route('**/*', self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith((self.origin, 'data:', 'blob:')): return route.continue_()
        self.external.append(url)
        route.abort()

    def _error(self, text: str):
        why = [k for k, rx in self.harmless.items() if rx.search(text)]
        if why: self.allowed.add(why[0]); print(f'allowed ({why[0]}): {text[:300]}')
        else: self.errors.append(text)

    def shot(self, step: str):
        self.n += 1
        self.page.screenshot(path=self.folder / f'{self.n:02d}-{step}.png', full_page=False)

    def clean(self, where: str):
        "No console error (besides the named harmless ones) and no request off 127.0.0.1 so far"
        assert not self.errors, f'{where}: console errors {self.errors[:5]}'
        assert not self.external, f'{where}: requests off 127.0.0.1 (the page is not self-contained) {self.external[:5]}'

class Shots:
    def __init__(self, folder: Path): self.folder, self.pages = folder, []

@pytest.fixture
def shots(request):
    "This test's screenshot folder, emptied first; on failure, a last screenshot of each page and the folder's name"
    folder = SHOTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    s = Shots(folder)
    yield s
    rep = getattr(request.node, 'rep_call', None)
    if rep is not None and rep.failed:
        for p in s.pages:
            try: p.shot('at-failure')
            except Exception as e: print(f'no screenshot at failure: {e}')
        print(f'\nscreenshots of each step: {folder}')

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *a): pass

@pytest.fixture
def serve():
    "Serve folders on 127.0.0.1 (a random free port) for the length of a test"
    servers = []
    def start(folder: Path) -> str:
        s = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        return f'http://127.0.0.1:{s.server_port}/'
    yield start
    for s in servers: s.shutdown(); s.server_close()

PLOTS_DRAWN = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
    id: el.id, svg: el.querySelectorAll('svg.main-svg').length,
    traces: el.querySelectorAll('.trace, .point, .heatmaplayer image, .imagelayer image').length,
    legend: [...el.querySelectorAll('.legendtext')].map(t => t.textContent),
    names: (el._fullData || []).filter(t => t.showlegend).map(t => t.name)}))"""

def plots_drawn(page, where: str) -> list:
    "Every plotly chart on the page has drawn its SVG and some traces"
    plots = page.evaluate(PLOTS_DRAWN)
    for p in plots:
        assert p['svg'] and p['traces'], f'{where}: chart {p["id"]} was not drawn ({p})'
    return plots

# ---------------------------------------------------------------- the docs site
def test_docs_site(browser, docs_build, serve, shots):
    "Every page loads cleanly offline, plotly output is drawn, API entries are in the contents, search finds TradingDataset"
    site, work, r = docs_build
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    base = serve(site)
    p = Page(browser, shots, base, HARMLESS)
    pages = sorted(f.name for f in site.glob('*.html') if f.name not in ('genindex.html', 'search.html'))
    with_plots = {f.name for f in site.glob('*.html') if 'plotly-graph-div' in f.read_text()}
    assert 'index.html' in pages and with_plots, (pages, with_plots)
    for name in pages:
        p.page.goto(base + name, wait_until='load')
        if name in with_plots:
            p.page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length > 0")
        p.shot(name.removesuffix('.html'))
        n = len(plots_drawn(p.page, name))
        assert (n > 0) == (name in with_plots), f'{name}: {n} charts drawn'
        toc = p.page.locator('#pst-page-toc-nav a').all_inner_texts()
        if name != 'index.html': assert toc, f'{name}: no contents panel'
        p.clean(name)
    # API entries are sections: in the contents panel, with nbdev's anchors
    p.page.goto(base + 'dataset.html', wait_until='load')
    toc = p.page.locator('#pst-page-toc-nav a').all_inner_texts()
    assert 'TradingDataset' in toc and 'TradingDataset.__getitems__' in toc, toc
    p.page.goto(base + 'dataset.html#tradingdataset', wait_until='load')
    assert p.page.locator('[id="tradingdataset"]').count() == 1
    p.shot('api-anchor')
    # the home page is in the navigation
    assert p.page.locator('nav.bd-docs-nav a[href="index.html"]').count() >= 1
    # search, offline
    p.page.goto(base + 'search.html?q=TradingDataset', wait_until='load')
    hits = p.page.locator('#search-results li a')
    hits.first.wait_for()
    found = hits.evaluate_all('els => els.map(e => e.getAttribute("href"))')
    p.shot('search')
    assert any(h.startswith('dataset.html') for h in found), found
    p.clean('search')
    # opened from disk, as `make docs` suggests: charts and search work without any server
    local = site.resolve().as_uri() + '/'
    f = Page(browser, shots, local, FROM_DISK)
    f.page.goto(local + 'index.html', wait_until='load')
    f.page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length > 0")
    plots_drawn(f.page, 'index.html from disk')
    f.page.goto(local + 'search.html?q=TradingDataset', wait_until='load')
    f.page.locator('#search-results li a').first.wait_for()
    f.shot('search-from-disk')
    f.clean('from disk')
    print(f'docs: harmless console errors from disk: {sorted(f.allowed) or "none"}')
    print(f'docs: {len(pages)} pages, {len(with_plots)} with charts; harmless console errors seen: {sorted(p.allowed) or "none"}')

# ---------------------------------------------------------------- the explorer in JupyterLab
EXPLORER_NB = {
    'cells': [
        {'cell_type': 'code', 'execution_count': None, 'id': 'rsi', 'metadata': {}, 'outputs': [],
         'source': "from trading_nb.explore import indicator_explorer\nrsi = indicator_explorer('sp500', kind='rsi', start='2017-01-01')\nrsi"},
        {'cell_type': 'code', 'execution_count': None, 'id': 'bb', 'metadata': {}, 'outputs': [],
         'source': "bb = indicator_explorer('sp500', kind='bbands', start='2017-01-01')\nbb"},
    ],
    'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
    'nbformat': 4, 'nbformat_minor': 5,
}

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@pytest.fixture
def lab(tmp_path):
    "JupyterLab on 127.0.0.1 with a random port and token, a scratch profile, and the explorer notebook; stopped at the end"
    nbdir, home = tmp_path / 'notebooks', tmp_path / 'jupyter'
    nbdir.mkdir()
    (nbdir / 'explorer.ipynb').write_text(json.dumps(EXPLORER_NB))
    cfg = home / 'config' / 'labconfig'
    cfg.mkdir(parents=True)   # no "news" question popping over the notebook
    (cfg / 'page_config.json').write_text(json.dumps({'disabledExtensions': {'@jupyterlab/apputils-extension:announcements': True}}))
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(home / 'config'), 'JUPYTER_DATA_DIR': str(home / 'data'),
           'JUPYTER_RUNTIME_DIR': str(home / 'runtime'), 'JUPYTER_PLATFORM_DIRS': '1', 'IPYTHONDIR': str(home / 'ipython')}
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [str(Path(sys.executable).parent / 'jupyter-lab'), '--no-browser', '--allow-root', '--ip=127.0.0.1', f'--port={port}',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={nbdir}',
           '--LabApp.news_url=None', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    log = (tmp_path / 'lab.log').open('w')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=nbdir, start_new_session=True)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f'JupyterLab exited: {(tmp_path / "lab.log").read_text()[-3000:]}'
            try:
                urllib.request.urlopen(f'{url}api/status?token={token}', timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, f'JupyterLab did not answer in 90 s: {(tmp_path / "lab.log").read_text()[-3000:]}'
                time.sleep(0.5)
        yield url, token, tmp_path / 'lab.log'
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the server and the kernel it started (same session)
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL); proc.wait(10)
        log.close()

# What the chart draws: plotly's resolved traces (`_fullData`: binary arrays decoded, default names filled in as 'trace N')
TRACES = """out => { const el = out.querySelector('.js-plotly-plot');
    return el && el._fullData ? el._fullData.filter(t => t.visible === true).map(t => ({name: t.name, y: Array.from(t.y || []).slice(-50)})) : null }"""

def _state(out) -> tuple[dict, str]:
    "The explorer's visible traces (name -> last values) and its score table's text"
    traces = out.evaluate(TRACES) or []
    return {str(t['name']): t['y'] for t in traces}, out.locator('.widget-html table').inner_text()

def _slider(out, label: str):
    "The handle of the slider described `label` in one explorer's output"
    box = out.locator('.widget-slider').filter(has=out.page.locator('.widget-label', has_text=re.compile(f'^{label}$')))
    assert box.count() == 1, f'no single {label!r} slider'
    return box.locator('.noUi-handle'), box.locator('.widget-readout')

def _nudge(p: Page, out, label: str, step: str) -> tuple[tuple, tuple, str, str]:
    "Move a slider one step right with the keyboard; wait until the chart follows"
    before, mark = _state(out), out.evaluate(f'out => JSON.stringify(({TRACES})(out))')
    handle, readout = _slider(out, label)
    old = readout.inner_text()
    handle.focus()
    handle.press('ArrowRight')
    p.page.wait_for_function(f'([out, before]) => JSON.stringify(({TRACES})(out)) !== before', arg=[out.element_handle(), mark])
    # the scores and the causality warning are set later in the same update: wait until the kernel is done with it
    p.page.locator('.jp-StatusBar-TextItem', has_text='| Idle').first.wait_for()
    p.page.wait_for_timeout(300)
    new = readout.inner_text()
    out.evaluate('e => e.scrollIntoView()')
    p.shot(step)
    return before, _state(out), old, new

def test_explorer_in_jupyterlab(browser, lab, shots):
    "Run the explorer in JupyterLab, move the RSI length and the Bollinger std sliders with the keyboard: chart and scores follow"
    url, token, log = lab
    p = Page(browser, shots, url, HARMLESS)
    p.page.goto(f'{url}lab/tree/explorer.ipynb?token={token}', wait_until='load')
    p.page.locator('.jp-StatusBar-TextItem', has_text='| Idle').first.wait_for(timeout=90_000)   # the kernel is up
    assert p.page.locator('.jp-Notebook .jp-Cell').count() == len(EXPLORER_NB['cells'])
    p.shot('opened')
    p.page.locator('.jp-Notebook .jp-Cell').first.click()
    p.page.keyboard.press('Escape')
    for _ in EXPLORER_NB['cells']: p.page.keyboard.press('Shift+Enter')
    outs = p.page.locator('.jp-Notebook .jp-Cell .jp-OutputArea')
    p.page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea')].filter(o => o.querySelector('.js-plotly-plot svg.main-svg')"
                             " && o.querySelector('.widget-html table')).length >= 2", timeout=180_000)
    p.shot('explorers-drawn')
    rsi, bb = outs.nth(0), outs.nth(1)

    before, after, old, new = _nudge(p, rsi, 'length', 'rsi-length')
    assert (old, new) == ('14', '15'), (old, new)
    assert 'rsi_14' in before[0] and 'rsi_15' in after[0] and 'rsi_14' not in after[0], (list(before[0]), list(after[0]))
    assert before[0]['rsi_14'] != after[0]['rsi_15'], 'the RSI line did not change'
    price = [k for k in before[0] if k not in ('rsi_14',)]
    assert len(price) == 1 and before[0][price[0]] == after[0][price[0]], 'the price line should not move with the RSI length'
    assert 'rsi_15' in after[1] and before[1] != after[1], f'the IC table did not follow: {before[1]!r} -> {after[1]!r}'

    before, after, old, new = _nudge(p, bb, 'std', 'bbands-std')
    assert (old, new) == ('2.00', '2.10'), (old, new)
    up0, up1 = [k for k in before[0] if k.startswith('bb_upper')], [k for k in after[0] if k.startswith('bb_upper')]
    assert up0 and up1 and up0 != up1, (list(before[0]), list(after[0]))
    assert before[0][up0[0]] != after[0][up1[0]], f'the Bollinger std slider changed the names ({up0} -> {up1}) but not the bands'
    assert before[1] != after[1], f'the IC table did not follow the std slider: {before[1]!r}'

    # no kernel error: no traceback or error output, no red warning from the explorer, the kernel alive
    errors = p.page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
    assert not [e for e in errors if 'Error' in e or 'Traceback' in e], errors
    assert p.page.locator('.jp-OutputArea-output .ansi-red-fg, .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]').count() == 0
    assert not p.page.locator('.widget-html b[style*="#b00"]').all_inner_texts()
    assert p.page.locator('.jp-StatusBar-TextItem', has_text='| Idle').count() == 1, 'the kernel is not idle (dead or busy)'
    assert 'Traceback' not in log.read_text(), log.read_text()[-3000:]
    p.shot('done')
    p.clean('JupyterLab')
    print(f'harmless console errors seen: {sorted(p.allowed) or "none"}')
    legend = p.page.locator('.js-plotly-plot .legendtext').all_text_contents()
    assert not [t for t in legend if re.fullmatch(r'trace \d+', t)] and 'close' in legend, f'unnamed traces in the explorer: {legend}'

# ---------------------------------------------------------------- the training report
@pytest.fixture(scope='module')
def small_run(tmp_path_factory):
    "A tiny training run on synthetic bars (as tests/test_cli.py does, smaller: ~20 s), for its report.html"
    from trading_nb.data import make_synthetic
    d = tmp_path_factory.mktemp('report')
    make_synthetic(900, seed=11).to_csv(d / 'bars.csv', index_label='Date')
    exe = str(Path(sys.executable).parent / 'trading-nb')
    r = subprocess.run([exe, 'train', '--data', d / 'bars.csv', '--out', d / 'run', '--epochs', '1', '--lookback', '20', '--seed', '3',
                        '--threads', '1', '--quiet'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return d / 'run'

def test_report_offline(browser, small_run, serve, shots):
    "report.html opens with no internet, draws every chart, names every trace, shows no local path, keeps legends off titles"
    html = (small_run / 'report.html').read_text()
    for local in {str(small_run.parent), str(Path.home()), str(ROOT), '/tmp/', '/work/'} - {'/'}:
        assert local not in html, f'report.html shows a path of this machine: {local}'
    base = serve(small_run)
    p = Page(browser, shots, base, HARMLESS)
    p.page.goto(base + 'report.html', wait_until='load')
    p.page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot svg.main-svg').length > 0")
    p.shot('top')
    plots = plots_drawn(p.page, 'report.html')
    assert len(plots) == len(re.findall(r'class="plotly-graph-div"', html)) > 0, plots
    for pl in plots:
        bad = [n for n in pl['legend'] + pl['names'] if n is None or re.fullmatch(r'trace \d+', n or '')]
        assert not bad, f'chart {pl["id"]}: unnamed traces {bad}'
    overlaps = p.page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(el => {
        const legend = el.querySelector('.legend'), title = el.querySelector('.g-gtitle .gtitle, .gtitle');
        if (!legend || !title || !title.textContent) return [];
        const a = legend.getBoundingClientRect(), b = title.getBoundingClientRect();
        const hit = a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        return hit ? [title.textContent] : []; })""")
    for i in range(len(plots)):
        p.page.locator('.js-plotly-plot').nth(i).scroll_into_view_if_needed()
        p.shot(f'chart-{i + 1}')
    assert not overlaps, f'legends drawn over the titles of {overlaps}'
    p.clean('report.html')
