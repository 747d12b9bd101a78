"""`trading-nb serve` against `trading-nb replay`: the real server as a process on 127.0.0.1 (and in process where that suffices).

The answers over WebSocket /stream equal replay's on the same bars (the S&P 500 test period, a panel) with repeats, revisions,
late bars, gaps and malformed messages injected; a SIGKILL at a random bar and a restart give the answers of an uninterrupted
run; models reloaded (HTTP and SIGHUP) between ticks while a client streams; the token refused and accepted; hypothesis
garbage never crashes the service nor changes another client's answers; the page in headless chromium.
Small untrained models (the numbers need to be a real model's, not good ones); every child process is killed in `finally`.
"""
import json, os, random, shutil, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from trading_nb.data import load_sample, make_synthetic_panel
from trading_nb.dataset import chronological_split
from trading_nb.inference import _ticks, export_model, replay, setup_inference
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.serve import Limits, Service, make_app, model_id

ROOT = Path(__file__).resolve().parents[1]
EXE = str(Path(sys.executable).parent / 'trading-nb')
SHOTS = ROOT / 'tests' / 'artifacts' / 'browser' / 'serve'
TOKEN = 'test-token-0123456789abcdef'
set_hypothesis_home_dir(tempfile.mkdtemp(prefix='hypothesis-'))   # its caches out of the checkout


# ---------------------------------------------------------------- models, data and the server as a process
def _tiny(ds, seed: int, path: Path, data) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig(input_channels=ds.n_channels, n_indicators=ds.n_indicators, output_dim=ds.output_dim, lookback=ds.lookback,
                      conv_channels=8, hidden_size=16, indicator_hidden=8, head_hidden=8)
    return export_model(TradingModel(cfg), path, ds, data=data)

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "Model files (S&P 500: two with the same features, one with another lookback; a panel of four symbols), the bars, replay's answers"
    d = tmp_path_factory.mktemp('serve')
    torch.set_num_threads(1)
    sp = load_sample('sp500')
    tr, _, test = chronological_split(sp, lookback=20)
    tr30, _, _ = chronological_split(sp, lookback=30)
    _tiny(tr, 0, d / 'sp.pt', sp); _tiny(tr, 1, d / 'sp2.pt', sp); _tiny(tr30, 0, d / 'sp30.pt', sp)
    panel = make_synthetic_panel(4, 600, seed=3)
    ptr, _, _ = chronological_split(panel, lookback=20)
    _tiny(ptr, 0, d / 'panel.pt', panel)
    period = sp.loc[test.dates.min():]                       # the S&P 500 test period
    return dict(dir=d, sp=sp, period=period, panel=panel)

def _bars(frame: pd.DataFrame) -> list[dict]:
    return [dict(date=t.isoformat(), **r) for t, r in frame.to_dict('index').items()]

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

class Server:
    "`trading-nb serve` as a child process on 127.0.0.1; `stop()` kills it (SIGKILL unless asked for a clean stop)"
    def __init__(self, model, *args, env=None, token=None):
        self.port, self.token = _free_port(), token
        self.url = f'http://127.0.0.1:{self.port}'
        fd, self.log_path = tempfile.mkstemp(prefix='trading-nb-serve-', suffix='.log')
        self.log = os.fdopen(fd, 'w+')
        e = {**os.environ, 'OMP_NUM_THREADS': '1', **(env or {})}
        self.proc = subprocess.Popen([EXE, 'serve', '--model', str(model), '--port', str(self.port), '--threads', '1', *map(str, args)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.wait_ready()

    def headers(self) -> dict: return {'Authorization': f'Bearer {self.token}'} if self.token else {}

    def wait_ready(self, limit: float = 120):
        import httpx
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if self.proc.poll() is not None: raise RuntimeError(f'the server exited with {self.proc.returncode}: {self.output()[-2000:]}')
            try:
                if httpx.get(self.url + '/health', headers=self.headers(), timeout=2).status_code == 200: return
            except httpx.TransportError: pass
            time.sleep(0.1)
        raise RuntimeError(f'the server did not answer /health in {limit} s: {self.output()[-2000:]}')

    def output(self) -> str:
        self.log.flush(); self.log.seek(0); return self.log.read()

    def ws(self, path='/stream'):
        from websockets.sync.client import connect
        q = f'?token={self.token}' if self.token else ''
        return connect(f'ws://127.0.0.1:{self.port}{path}{q}', max_size=None, open_timeout=30)

    def stop(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try: self.proc.wait(30)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait(30)
        if not self.log.closed: self.log.close()
        Path(self.log_path).unlink(missing_ok=True)

def _ask(ws, msg) -> dict | list:
    ws.send(msg if isinstance(msg, str) else json.dumps(msg)); return json.loads(ws.recv(timeout=60))

def _cli_replay(model: Path, data, out: Path) -> pd.DataFrame:
    "`trading-nb replay` itself, read back"
    r = subprocess.run([EXE, 'replay', '--model', str(model), '--data', str(data), '--out', str(out), '--threads', '1'],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(out, parse_dates=['date'])
    return df.set_index(['symbol', 'date'] if 'symbol' in df.columns else 'date')

def _ok_frame(answers: list[dict], panel: bool = False) -> pd.DataFrame:
    "The served predictions as replay frames them: 'ok' answers, the last answer of each bar (a revision replaces its bar)"
    ok = pd.DataFrame([a for a in answers if a['status'] == 'ok' and not a['repeat']])
    ok['date'] = pd.to_datetime(ok['date'])
    key = ['symbol', 'date'] if panel else ['date']
    return ok.drop_duplicates(key, keep='last').set_index(key).sort_index()


# ---------------------------------------------------------------- the S&P 500 test period over a real server, with a feed's troubles
def test_stream_equals_replay_with_troubles(work, tmp_path):
    d, period = work['dir'], work['period']
    holed = period.drop(period.index[400:410])                   # ten bars never sent: a gap of two weeks
    holed.to_csv(tmp_path / 'holed.csv', index_label='date')
    want = _cli_replay(d / 'sp.pt', tmp_path / 'holed.csv', tmp_path / 'replay.csv')
    bars, rng = _bars(holed), random.Random(22)
    srv = Server(d / 'sp.pt', '--state', tmp_path / 'state', '--max-gap', '6D')
    got, seen = [], {k: 0 for k in ('repeat', 'revised', 'late', 'bad', 'gap')}
    try:
        with srv.ws() as ws:
            for i, b in enumerate(bars):
                if i % 37 == 5:                                      # a wrong version first, then the right one (a revision)
                    wrong = dict(b, close=b['close'] * 1.02, high=max(b['high'], b['close'] * 1.02))
                    a = _ask(ws, wrong); assert a['status'] in ('ok', 'warmup') and not a['revised'], a
                    got.append(a)
                a = _ask(ws, b); got.append(a)
                if i % 37 == 5: assert a['revised'], a; seen['revised'] += 1
                if a['gap']: seen['gap'] += 1; assert 'days since the last bar' in a['gap'] and 'more than the 6 days allowed' in a['gap'], a['gap']
                if i % 29 == 3:                                      # the feed sends the bar again
                    r = _ask(ws, b); assert r['repeat'] and {k: r[k] for k in ('p_up', 'status', 'date')} == {k: a[k] for k in ('p_up', 'status', 'date')}, (r, a)
                    seen['repeat'] += 1
                if i % 41 == 7 and i > 20:                           # a late bar: refused with the reason
                    r = _ask(ws, bars[i - 10]); assert r['status'] == 'rejected' and 'out of order' in r['reason'], r
                    seen['late'] += 1
                if i % 53 == 11:                                     # malformed messages: answered, named, the connection kept
                    for msg, why in (('{"date": "2017-01-0', 'not JSON'), (json.dumps(dict(b, close='abc')), "field 'close' is not a number: 'abc'"),
                                     (json.dumps({k: v for k, v in b.items() if k != 'open'}), "missing field 'open'"),
                                     (json.dumps(dict(b, low=-1.0)), "field 'low' is a non-positive price: -1.0"),
                                     (json.dumps(dict(b, volume=float('nan'))), "field 'volume' is NaN"), ('"a bar"', 'a bar (a JSON object) or a tick')):
                        r = _ask(ws, msg); assert r['status'] in ('error', 'rejected') and why in r['reason'], (why, r)
                    seen['bad'] += 1
        health = httpx.get(srv.url + '/health').json()
    finally: srv.stop()
    assert min(seen.values()) >= 1, seen
    served = _ok_frame(got)
    assert list(served.index) == list(want.index), (len(served), len(want))
    np.testing.assert_allclose(served[['p_down', 'p_up']].to_numpy(), want[['p_down', 'p_up']].to_numpy(), rtol=0, atol=1e-6)
    assert (served.signal.to_numpy() == want.signal.to_numpy()).all()
    assert health['counts']['repeat'] == seen['repeat'] and health['counts']['gap'] == seen['gap'] == 1


# ---------------------------------------------------------------- a panel's ticks, in process
def test_panel_ticks_equal_replay(work, tmp_path):
    d, panel = work['dir'], work['panel']
    panel.to_csv(tmp_path / 'panel.csv')
    want = _cli_replay(d / 'panel.pt', tmp_path / 'panel.csv', tmp_path / 'replay.csv')
    ticks = [[dict(b, date=b['date'].isoformat()) for b in t] for t in _ticks(panel)]
    from fastapi.testclient import TestClient
    got = []
    with TestClient(make_app(Service(d / 'panel.pt', tmp_path / 'state', known_only=True, device='cpu'))) as client:
        with client.websocket_connect('/stream') as ws:
            for i, t in enumerate(ticks):
                if i % 50 == 10:                                     # the tick with a correction of one symbol and a stranger
                    wrong = dict(t[1], close=t[1]['close'] * 0.97, low=min(t[1]['low'], t[1]['close'] * 0.97))
                    t = [wrong, *t, dict(t[0], symbol='NOT-A-SYMBOL')]
                ws.send_text(json.dumps(t)); answers = json.loads(ws.receive_text())
                assert len(answers) == len(t)
                if i % 50 == 10:
                    assert answers[2]['revised'] and answers[-1]['status'] == 'rejected' and 'NOT-A-SYMBOL' in answers[-1]['reason'], answers
                got += answers
                if i % 61 == 9:                                      # the whole tick again: every answer a repeat
                    ws.send_text(json.dumps(t)); again = json.loads(ws.receive_text())
                    assert all(a['repeat'] for a in again if a['symbol'] != 'NOT-A-SYMBOL'), again
    served = _ok_frame(got, panel=True)
    assert list(served.index) == list(want.index)
    np.testing.assert_allclose(served[['p_down', 'p_up']].to_numpy(), want[['p_down', 'p_up']].to_numpy(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- SIGKILL at a random bar, then a restart
def test_sigkill_at_a_random_bar(work, tmp_path):
    d, period = work['dir'], work['period']
    bars = _bars(period.iloc[:420])
    ref = Service(d / 'sp.pt', device='cpu')
    want = [ref.tick([b])[0] for b in bars]                      # an uninterrupted run
    seed = int.from_bytes(os.urandom(2), 'big')
    k = random.Random(seed).randrange(30, len(bars) - 30)
    print(f'SIGKILL after bar {k} (seed {seed})')
    srv = Server(d / 'sp.pt', '--state', tmp_path / 'state', '--snapshot-every', 17)
    try:
        with srv.ws() as ws:
            got = [_ask(ws, b) for b in bars[:k]]
            ws.send(json.dumps(bars[k]))                             # in flight when the process dies: answered or not
            srv.proc.send_signal(signal.SIGKILL); srv.proc.wait(30)
    finally: srv.stop()
    assert got == want[:k]
    again = Server(d / 'sp.pt', '--state', tmp_path / 'state')
    try:
        with again.ws() as ws: rest = [_ask(ws, b) for b in bars[k:]]
        restored = httpx.get(again.url + '/health').json()['restored']
    finally: again.stop(signal.SIGTERM)
    first = dict(rest[0], repeat=False)                              # the bar in flight may have been logged: then it comes back a repeat
    assert [first, *rest[1:]] == want[k:], f'seed {seed}, k {k}'
    assert restored['snapshots'] == 1 and restored['replayed'] <= 17, restored


def test_compact_log_at_start(work, tmp_path):
    "Killed, then started with --compact-log: the log cut to each symbol's last bars, and the answers go on as an uninterrupted run's"
    d, period = work['dir'], work['period']
    bars = _bars(period.iloc[:420])
    ref = Service(d / 'sp.pt', device='cpu')
    want = [ref.tick([b])[0] for b in bars]
    keep = ref.im.history_bars
    srv = Server(d / 'sp.pt', '--state', tmp_path / 'state', '--snapshot-every', 17)
    try:
        with srv.ws() as ws: got = [_ask(ws, b) for b in bars[:380]]
        srv.proc.send_signal(signal.SIGKILL); srv.proc.wait(30)
    finally: srv.stop()
    size = (tmp_path / 'state' / 'bars.log').stat().st_size
    again = Server(d / 'sp.pt', '--state', tmp_path / 'state', '--compact-log', keep)
    try:
        with again.ws() as ws: rest = [_ask(ws, b) for b in bars[380:]]
        out = again.output()
    finally: again.stop(signal.SIGTERM)
    assert got + rest == want
    assert f"bar log compacted to each symbol's last {keep:,} bars: 380 -> {keep:,} bars of 1 symbol" in out, out
    assert (tmp_path / 'state' / 'bars.log').stat().st_size < size
    r = subprocess.run([EXE, 'serve', '--model', str(d / 'sp.pt'), '--compact-log', '5', '--port', '1'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'there is no bar log to compact' in r.stderr, r.stderr

# ---------------------------------------------------------------- a model swapped while a client streams
def test_reload_between_ticks_while_streaming(work, tmp_path):
    d, period = work['dir'], work['period']
    bars = _bars(period.iloc[:420])
    live = tmp_path / 'model.pt'
    shutil.copy(d / 'sp.pt', live)
    im, im2 = setup_inference(d / 'sp.pt', device='cpu'), setup_inference(d / 'sp2.pt', device='cpu')
    wants = {model_id(m): replay(m, period.iloc[:420]) for m in (im, im2)}
    srv = Server(live, '--state', tmp_path / 'state')
    got, errors, swapped = [], [], [threading.Event(), threading.Event()]
    def stream():   # streams on while a model loads; waits at bars 360 and 400 only if a swap has not happened by then
        try:
            with srv.ws() as ws:
                for i, b in enumerate(bars):
                    if i in (360, 400): swapped[i == 400].wait(300)
                    got.append(_ask(ws, b))
        except Exception as e: errors.append(e)
    def model_is(m) -> bool: return httpx.get(srv.url + '/model', timeout=60).json()['id'] == model_id(m)
    try:
        t = threading.Thread(target=stream); t.start()
        while len(got) < 300 and t.is_alive(): time.sleep(0.02)
        tmp = tmp_path / 'incoming.pt'
        shutil.copy(d / 'sp2.pt', tmp); os.replace(tmp, live)        # new contents under the same name ...
        srv.proc.send_signal(signal.SIGHUP)                          # ... read again on SIGHUP
        for _ in range(2400):
            if model_is(im2): break
            time.sleep(0.05)
        else: raise AssertionError(f'SIGHUP did not reload the model: {srv.output()[-2000:]}')
        swapped[0].set()
        while len(got) < 370 and t.is_alive(): time.sleep(0.02)
        r = httpx.post(srv.url + '/model/reload', json=dict(path=str(d / 'sp.pt')), timeout=120).json()   # another file, over HTTP
        swapped[1].set()
        t.join(300)
        refused = httpx.post(srv.url + '/model/reload', json=dict(path=str(tmp_path / 'missing.pt')), timeout=60)
        final = httpx.get(srv.url + '/model').json()
    finally:
        for e in swapped: e.set()
        srv.stop()
    assert not errors, errors
    assert r['rebuilt'] is False and (r['previous'], r['model']) == (model_id(im2), model_id(im)), r
    assert refused.status_code == 400 and 'reload refused' in refused.json()['reason'] and final['id'] == model_id(im)
    models = [a['model'] for a in got]
    changes = [i for i in range(1, len(models)) if models[i] != models[i - 1]]
    assert len(got) == len(bars) and len(changes) == 2 and models[0] == models[-1] == model_id(im), changes
    assert 300 <= changes[0] <= 360 < 370 <= changes[1] <= 400, changes   # each model swapped in between two ticks, while the client streamed
    for a in got:
        if a['status'] == 'ok':
            w = wants[a['model']].loc[pd.Timestamp(a['date'])]
            assert abs(a['p_up'] - w.p_up) <= 1e-6, (a, w)           # every answer is its model's replay answer: no tick mixes two


# ---------------------------------------------------------------- the token, and an address other than 127.0.0.1
@pytest.fixture(scope='module')
def token_server(work):
    "The panel's model served with a token from the environment (TRADING_NB_TOKEN); shared by the token and page tests"
    srv = Server(work['dir'] / 'panel.pt', env={'TRADING_NB_TOKEN': TOKEN}, token=TOKEN)
    try: yield srv
    finally: srv.stop()

def _panel_ticks(panel) -> list[list[dict]]:
    return [[dict(b, date=b['date'].isoformat()) for b in t] for t in _ticks(panel)]

def test_token_refused_and_accepted(work, token_server, monkeypatch, capsys):
    from trading_nb.cli import main
    monkeypatch.delenv('TRADING_NB_TOKEN', raising=False)
    assert main(['serve', '--model', str(work['dir'] / 'sp.pt'), '--host', '0.0.0.0']) == 2        # refuses to start: no token
    assert 'needs a token: pass --token or set TRADING_NB_TOKEN' in capsys.readouterr().err
    assert main(['serve', '--model', str(work['dir'] / 'sp.pt'), '--token', 'short']) == 2
    assert 'the token is too short' in capsys.readouterr().err
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    srv, ticks = token_server, _panel_ticks(work['panel'])
    for path in ('/health', '/model', '/', '/latest', '/plotly.min.js'):
        assert httpx.get(srv.url + path).status_code == 401, path
        assert httpx.get(srv.url + path, headers={'Authorization': 'Bearer ' + TOKEN[:-1] + 'x'}).status_code == 401, path
        assert httpx.get(srv.url + path + '?token=' + TOKEN[:-1]).status_code == 401, path
    r = httpx.post(srv.url + '/bars', json=ticks[0])
    assert r.status_code == 401 and r.json()['status'] == 'error' and 'missing or wrong token' in r.json()['reason']
    assert httpx.post(srv.url + '/model/reload').status_code == 401
    assert httpx.get(srv.url + '/health', headers=srv.headers()).json()['status'] == 'ok'
    assert httpx.get(srv.url + '/health?token=' + TOKEN).json()['status'] == 'ok'
    assert [a['status'] for a in httpx.post(srv.url + '/bars', json=ticks[0], headers=srv.headers()).json()] == ['warmup'] * 4
    with pytest.raises(InvalidStatus):
        with connect(f'ws://127.0.0.1:{srv.port}/stream', open_timeout=30) as ws: ws.recv(timeout=5)
    with pytest.raises(InvalidStatus):
        with connect(f'ws://127.0.0.1:{srv.port}/stream?token=wrong-token-0123456789', open_timeout=30) as ws: ws.recv(timeout=5)
    with srv.ws() as ws: assert [a['status'] for a in _ask(ws, ticks[1])] == ['warmup'] * 4


def test_limits_keep_the_connection(work):
    from fastapi.testclient import TestClient
    with TestClient(make_app(Service(work['dir'] / 'sp.pt', device='cpu'), limits=Limits(max_bytes=2000, max_tick=1, rate=1))) as client:
        with client.websocket_connect('/stream') as ws:
            ws.send_text('x' * 3000); a = json.loads(ws.receive_text())
            assert a['status'] == 'error' and a['reason'].startswith('message too large: 3,000 bytes, the limit is 2,000'), a
            reasons = []
            for b in _bars(work['period'].iloc[:10]):
                ws.send_text(json.dumps(b)); reasons.append(json.loads(ws.receive_text())['reason'] or '')
            assert any(r.startswith('rate limit: more than 1 bars a second on this connection') for r in reasons), reasons
            ws.send_text('{}'); assert json.loads(ws.receive_text())['status'] in ('error', 'rejected')   # still open


# ---------------------------------------------------------------- garbage from one client, another client's answers unchanged
KNOWN = ('S000', 'S001', 'S002', 'S003')
_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(_scalar, lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4), max_leaves=12)
_field = st.sampled_from(['date', 'open', 'high', 'low', 'close', 'volume', 'symbol', 'Date', 'CLOSE', 'timestamp', 'ticker'])
_stranger = st.text(max_size=12).filter(lambda s: s.strip() not in KNOWN)
_barish = st.dictionaries(_field, _scalar | st.sampled_from(['2020-01-01', 1e308, -0.0, float('nan'), '1e400']), max_size=8).filter(
    lambda d: not any(str(d.get(k)).strip() in KNOWN for k in ('symbol', 'ticker')))   # never a bar of the clean client's symbols
_bar_of_stranger = st.builds(lambda d, s: {**d, 'symbol': s}, _barish, _stranger)
_message = st.one_of(st.text(max_size=200), _json.map(lambda v: json.dumps(v)), _barish.map(json.dumps), _bar_of_stranger.map(json.dumps),
                     st.lists(_bar_of_stranger, min_size=1, max_size=5).map(json.dumps), st.binary(max_size=100).map(lambda b: b.decode('latin-1')),
                     st.integers(1, 40).map(lambda n: '[' * n * 100))

@pytest.fixture(scope='module')
def warm_panel(work, tmp_path_factory):
    "A state folder warmed on all but the panel's last 12 dates, the last ticks, and what a quiet service answers to them"
    d, panel = work['dir'], work['panel']
    folder = tmp_path_factory.mktemp('warm') / 'state'
    ticks = [[dict(b, date=b['date'].isoformat()) for b in t] for t in _ticks(panel)]
    svc = Service(d / 'panel.pt', folder, known_only=True, device='cpu')
    for t in ticks[:-12]: svc.tick(t)
    svc.close()
    quiet = Service(d / 'panel.pt', shutil.copytree(folder, folder.parent / 'quiet'), known_only=True, device='cpu')
    return folder, ticks[-12:], [quiet.tick(t) for t in ticks[-12:]]

@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(garbage=st.lists(_message, min_size=6, max_size=24))
def test_garbage_never_hurts_another_client(work, warm_panel, tmp_path_factory, garbage):
    from fastapi.testclient import TestClient
    folder, ticks, want = warm_panel
    state = shutil.copytree(folder, tmp_path_factory.mktemp('g') / 'state')
    svc = Service(work['dir'] / 'panel.pt', state, known_only=True, device='cpu')
    with TestClient(make_app(svc, limits=Limits(max_bytes=4096, max_tick=100, rate=1e6))) as client:
        with client.websocket_connect('/stream') as clean, client.websocket_connect('/stream') as bad:
            got, per = [], -(-len(garbage) // len(ticks))
            for i, t in enumerate(ticks):
                for g in garbage[i * per:(i + 1) * per]:
                    bad.send_text(g); a = json.loads(bad.receive_text())
                    for x in (a if isinstance(a, list) else [a]):
                        assert x['status'] in ('error', 'rejected') and x['reason'], (g, x)
                clean.send_text(json.dumps(t)); got.append(json.loads(clean.receive_text()))
        assert client.get('/health').json()['status'] == 'ok'
    assert got == want and sorted(svc.states.states) == list(KNOWN)   # the same answers; no state made for the garbage


# ---------------------------------------------------------------- the page, in headless chromium
def test_page_in_chromium(work, token_server):
    chromium = os.environ.get('CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
    required = os.environ.get('TRADING_NB_BROWSER_TESTS') == 'required'
    try: from playwright.sync_api import sync_playwright
    except ImportError: chromium = None
    if not chromium:
        if required: pytest.fail('browser tests are required here but chromium or playwright is missing')
        pytest.skip('chromium or playwright is not installed')
    SHOTS.mkdir(parents=True, exist_ok=True)
    srv, ticks = token_server, _panel_ticks(work['panel'])
    errors, external = [], []
    history = [bar for t in ticks[:-40] for bar in t]            # many dates in one message: each symbol's bars answered in order
    evil = '<img src=x onerror="window.pwned=1">'                # a client's symbol is text: the page must show it, never run it
    history += [dict(t[0], symbol=evil) for t in ticks[:-40]]
    for k in range(0, len(history), 400): httpx.post(srv.url + '/bars', json=history[k:k + 400], headers=srv.headers(), timeout=120).raise_for_status()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                              '--disable-component-update', '--disable-sync', '--no-first-run'], timeout=60_000)
        page = b.new_page(viewport={'width': 1300, 'height': 900})
        page.set_default_timeout(60_000)
        page.on('console', lambda m: m.type == 'error' and errors.append(m.text))
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.route('**/*', lambda r: r.continue_() if r.request.url.startswith((srv.url, 'data:', 'blob:')) else (external.append(r.request.url), r.abort()))
        page.goto(f'{srv.url}/?token={TOKEN}')
        page.wait_for_function("document.body.dataset.live === '1'")
        before = int(page.evaluate('document.body.dataset.points || 0'))
        page.screenshot(path=SHOTS / '01-history.png')
        for t in ticks[-40:]: httpx.post(srv.url + '/bars', json=t, headers=srv.headers(), timeout=60).raise_for_status()
        page.wait_for_function(f'Number(document.body.dataset.points) >= {before + 4 * 40}')
        traces = page.evaluate("document.getElementById('chart').data.map(t => [t.name, t.x.length, t.x[t.x.length - 1]])")
        rows = page.locator('#latest tr').count()
        table, pwned = page.locator('#latest').inner_text(), page.evaluate('window.pwned === undefined ? null : window.pwned')
        page.screenshot(path=SHOTS / '02-live.png')
        b.close()
    assert not errors, errors
    assert not external, external
    assert before > 0 and len(traces) == rows == 5 and set(KNOWN) < {t[0] for t in traces}, (before, traces)
    assert all(t[2] == ticks[-1][0]['date'] for t in traces if t[0] in KNOWN), traces
    assert pwned is None and evil in table, (pwned, table[-300:])
