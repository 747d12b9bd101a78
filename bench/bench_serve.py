"""The live service (`trading-nb serve`): WebSocket round trips and bars per second for 1, 10 and 50 clients beside the in-process
stream in the same run, and the server's memory over 1e5 bars.

`bench_serve(quick)`: at the design document's sizes (lookback 100, the default model, untrained weights, 1 torch thread in the
server and in the baseline) the server runs as a child process on 127.0.0.1 (never another address) from a state folder in which
every client's symbol is already past its warm-up, so that every bar timed is a prediction. Each client streams its own symbol
(the S&P 500's bars, renamed), one bar per message, waiting for each answer: at most 1,000 bars a client. The baseline is
`StreamState.update` on the same model and bars in this process. The memory row streams 1e5 bars (1,000 ticks of 100 synthetic
symbols) through a small model's server with a state folder and reads its resident memory as it goes.
Run alone: `.venv/bin/python bench/bench_serve.py [--quick]` prints the rows. Nothing here asserts a time.
"""
from __future__ import annotations
import asyncio, json, os, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

from trading_nb.data import load_sample, make_synthetic_panel
from trading_nb.dataset import chronological_split
from trading_nb.inference import StreamState, _ticks, export_model, setup_inference
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.serve import Service, _Series
from common import Row

EXE = str(Path(sys.executable).parent / 'trading-nb')
HOST = '127.0.0.1'                    # the benchmark never listens anywhere else


def _load() -> str: return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"

def _ms(xs, q: float) -> float: return float(np.percentile(np.asarray(xs) * 1e3, q))

def _port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0)); return s.getsockname()[1]

def _rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 1024
    return float('nan')


class _Server:
    "`trading-nb serve` on 127.0.0.1 as a child process, killed on exit"
    def __init__(self, model: Path, state: Path, log: Path):
        self.port = _port()
        self.log = open(log, 'w')
        self.proc = subprocess.Popen([EXE, 'serve', '--model', str(model), '--host', HOST, '--port', str(self.port), '--state', str(state),
                                      '--threads', '1', '--device', 'cpu', '--rate', '1e9'],
                                     stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'})

    async def ready(self, limit: float = 180):
        import websockets
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if self.proc.poll() is not None: raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log.name}")
            try:
                async with websockets.connect(f'ws://{HOST}:{self.port}/stream', open_timeout=5): return
            except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake): await asyncio.sleep(0.2)
        raise RuntimeError(f"the server did not start in {limit} s; see {self.log.name}")

    def __enter__(self): return self
    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try: self.proc.wait(60)
            except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait(30)
        self.log.close()


async def _client(port: int, bars: list[str], rtts: list):
    "One connection: each bar sent, its answer awaited; the round trips appended to `rtts`"
    import websockets
    async with websockets.connect(f'ws://{HOST}:{port}/stream', max_size=None) as ws:
        for b in bars:
            t0 = time.perf_counter()
            await ws.send(b)
            a = json.loads(await ws.recv())
            rtts.append(time.perf_counter() - t0)
            if a['status'] != 'ok': raise RuntimeError(f"a bar was not predicted: {a}")


async def _clients(port: int, streams: list[list[str]]) -> tuple[list, float]:
    rtts: list = []
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(port, s, rtts) for s in streams))
    return rtts, time.perf_counter() - t0


def _design_model(df, train, folder: Path) -> Path:
    "A default-size model (lookback 100, untrained weights: speed does not depend on them), exported"
    torch.manual_seed(0)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=100)
    return export_model(TradingModel(cfg), folder / 'model.pt', train, data=df)


def bench_serve(quick: bool, train=None) -> list:
    "WebSocket clients against a served model (1, 10, 50) beside the in-process stream; the server's memory over 1e5 bars"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix='bench-serve-'))
    try:
        df = load_sample('sp500')
        train = train if train is not None and train.lookback == 100 else chronological_split(df, lookback=100)[0]
        model = _design_model(df, train, work)
        im = setup_inference(model, device='cpu')
        H = im.history_bars
        runs = ((1, 300), (10, 100), (50, 40)) if quick else ((1, 1000), (10, 300), (50, 100))
        need = H + max(n for _, n in runs) * 2          # each client's symbol: warm-up, then the bars of its runs
        if need > len(df): raise RuntimeError(f"the S&P 500 has {len(df)} bars, {need} needed")
        bars = [dict(date=t.isoformat(), **r) for t, r in df.iloc[:need].to_dict('index').items()]
        n_max = max(c for c, _ in runs)
        # every client's symbol past its warm-up, in a state folder the server starts from
        svc = Service(im, work / 'state')
        for i in range(H): svc.tick([dict(bars[i], symbol='C00')])
        st0, s0 = svc.states.states['C00'], svc.series['C00']
        for c in range(1, n_max):                     # the same bars under other names: the same state, snapshotted as theirs
            sym = f'C{c:02d}'
            st, s = st0.copy(), _Series()
            s.before, s.last, s.answer = s0.before.copy(), s0.last, dict(s0.answer, symbol=sym)
            st.symbol = s.before.symbol = sym
            svc.states.states[sym], svc.series[sym] = st, s
            svc._dirty.add(sym)
        svc.close()
        cursor = {c: H for c in range(n_max)}
        # the in-process baseline: StreamState.update on the same model and bars, one thread
        n_base = max(n for _, n in runs)
        st = StreamState(im, history=df.iloc[:H])
        base = []
        for b in bars[H:H + n_base]:
            t0 = time.perf_counter(); a = st.update(b); base.append(time.perf_counter() - t0)
            if a['status'] != 'ok': raise RuntimeError(f"the baseline did not predict: {a}")
        b50, b99, b_rate = _ms(base, 50), _ms(base, 99), len(base) / sum(base)
        load0 = _load()
        rows = []
        size = f"lookback {im.lookback}, default model ({sum(p.numel() for p in im.model.parameters()):,} parameters), 1 torch thread"
        with _Server(model, work / 'state', work / 'server.log') as srv:
            asyncio.run(srv.ready())
            for n_clients, n_bars in runs:
                streams = []
                for c in range(n_clients):
                    k = cursor[c]
                    streams.append([json.dumps(dict(b, symbol=f'C{c:02d}')) for b in bars[k:k + n_bars]])
                    cursor[c] = k + n_bars
                h0 = asyncio.run(_health(srv.port))['counts']
                rtts, wall = asyncio.run(_clients(srv.port, streams))
                h1 = asyncio.run(_health(srv.port))['counts']
                total, ticks = n_clients * n_bars, h1['ticks'] - h0['ticks']
                who = f"{n_clients} client{'s' * (n_clients > 1)} x {n_bars} bars"
                for q in (50, 99):
                    rows.append(Row('serve', f'WebSocket round trip, {who} (each its own symbol, one bar a message): p{q}',
                                    _ms(rtts, q), 'ms', f'in-process stream (StreamState.update), p{q}', b50 if q == 50 else b99,
                                    f"{len(rtts)} / {len(base)}",
                                    (f"{size}; the server a child process on 127.0.0.1 with a state folder; {load0} at the start"
                                     if q == 50 else "bars waiting while a tick is answered share the next tick's forward pass"),
                                    higher_is_better=False))
                rows.append(Row('serve', f'bars answered per second, {who}', total / wall, 'bars/s',
                                'in-process stream, one series', b_rate, f"{total} / {len(base)}",
                                f"the wall time of all clients; answered in {ticks:,} ticks ({total / max(ticks, 1):.1f} bars per forward pass); {_load()}"))
        rows.append(_memory(work, quick))
        return rows
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(work, ignore_errors=True)


async def _health(port: int) -> dict:
    "GET /health over a raw socket (no HTTP client needed)"
    r, w = await asyncio.open_connection(HOST, port)
    w.write(f'GET /health HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n'.encode()); await w.drain()
    body = (await r.read()).split(b'\r\n\r\n', 1)[1]
    w.close()
    return json.loads(body)


def _memory(work: Path, quick: bool) -> Row:
    "The server's resident memory while 1e5 bars (ticks of 100 symbols) go through it, with a state folder (log + snapshots)"
    n_sym, n_dates = 100, (400 if quick else 1000)
    panel = make_synthetic_panel(n_sym, n_dates, seed=7)
    tr, _, _ = chronological_split(make_synthetic_panel(4, 600, seed=8), lookback=20)   # the model's training data: any will do
    torch.manual_seed(0)
    cfg = ModelConfig(input_channels=tr.n_channels, n_indicators=tr.n_indicators, output_dim=tr.output_dim, lookback=20,
                      conv_channels=8, hidden_size=16, indicator_hidden=8, head_hidden=8)
    model = export_model(TradingModel(cfg), work / 'small.pt', tr, data=panel)
    ticks = [json.dumps([dict(b, date=b['date'].isoformat()) for b in t]) for t in _ticks(panel)]
    marks = {len(ticks) // 10: None, len(ticks) // 2: None, len(ticks): None}   # the page's buffers (200 answers of 50 symbols) are full by the half
    with _Server(model, work / 'mem-state', work / 'mem.log') as srv:
        asyncio.run(srv.ready())
        async def run():
            import websockets
            async with websockets.connect(f'ws://{HOST}:{srv.port}/stream', max_size=None) as ws:
                for i, t in enumerate(ticks, 1):
                    await ws.send(t); await ws.recv()
                    if i in marks: marks[i] = _rss_mb(srv.proc.pid)
        t0 = time.perf_counter(); asyncio.run(run()); wall = time.perf_counter() - t0
        log_mb = (work / 'mem-state' / 'bars.log').stat().st_size / 2**20
    (a, ra), (m, rm), (b, rb) = sorted(marks.items())
    return Row('serve', f'server resident memory after {b * n_sym:,} bars ({b} ticks of {n_sym} symbols, state folder on)', rb, 'MB',
               f'after {m * n_sym:,} bars', rm, f"{b * n_sym:,} bars",
               f"{ra:.0f} MB after {a * n_sym:,}; a small model (lookback 20); {b * n_sym / wall:,.0f} bars/s in ticks of {n_sym}; "
               f"the bar log on disk grew to {log_mb:.0f} MB (it holds every bar; memory holds a bounded state per symbol)",
               higher_is_better=False)


if __name__ == '__main__':
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in bench_serve('--quick' in sys.argv):
        print(f"{r.row}: {r.figure:.3g} {r.unit} | {r.baseline}: {r.baseline_figure:.3g} | n {r.n} | {r.note}")
