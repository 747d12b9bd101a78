"""Benchmarks of the trading_nb pipeline, each figure beside a baseline measured in the same run.

Run `make bench` (or `.venv/bin/python bench/run.py`); it writes `bench/results.md` and `bench/results.json`.
Every timing is the median of `n` repeats taken after warm-up calls; `n` is written beside each row.
This is a measurement script, not a test: nothing here asserts a time.
"""
from __future__ import annotations
import argparse, datetime, itertools, json, os, platform, re, shutil, statistics, subprocess, sys, tempfile, time
from dataclasses import asdict, dataclass
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from design_doc_dataset import DesignDocDataset   # noqa: E402  (the design document's per-item dataset; the baseline of row 1)

from trading_nb.data import load_sample                                         # noqa: E402
from trading_nb.dataset import batches, chronological_split                     # noqa: E402
from trading_nb.features import DEFAULT_INDICATORS, calculate_technical_features, make_features, normalize_features  # noqa: E402
from trading_nb.model import ModelConfig, TradingModel                          # noqa: E402
from trading_nb.train import amp_dtype_for, set_seed, train_epoch               # noqa: E402

LOOKBACK, BATCH = 100, 64             # the design document's sizes
TALIB_KINDS = ('rsi', 'macd', 'bbands', 'atr', 'stoch', 'adx')   # the default indicators TA-Lib also has (not volume_z)


@dataclass
class Row:
    "One line of the results table"
    section: str
    row: str
    figure: float | None
    unit: str
    baseline: str
    baseline_figure: float | None
    n: str                   # repeats behind the medians (figure / baseline)
    note: str = ''
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        "figure / baseline figure"
        if self.figure is None or not self.baseline_figure: return None
        return self.figure / self.baseline_figure


# ---------------------------------------------------------------- timing helpers
def timed(fn, n: int, warmup: int = 1) -> tuple[float, list[float]]:
    "Median wall time of `fn()` over `n` calls after `warmup` untimed calls, and all the times"
    for _ in range(warmup): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- the machine
def _lscpu() -> dict:
    try: out = subprocess.run(['lscpu'], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError): return {}
    return {k.strip(): v.strip() for k, _, v in (l.partition(':') for l in out.splitlines())}


def cpu_peak(cores: int) -> dict:
    "Peak fp32 FLOP/s of `cores` cores: cores x GHz x FLOP/cycle of the widest FMA the flags show (2 FMA units assumed)"
    info = _lscpu()
    flags = set(info.get('Flags', '').split())
    mhz = None
    for key in ('CPU max MHz', 'CPU MHz'):
        try: mhz = float(info[key]); break
        except (KeyError, ValueError): pass
    if mhz is None:
        try: mhz = float(re.search(r'cpu MHz\s*:\s*([\d.]+)', Path('/proc/cpuinfo').read_text()).group(1))
        except (OSError, AttributeError): mhz = 2000.0
    if 'avx512f' in flags: simd, lanes = 'AVX-512 FMA', 16
    elif 'avx2' in flags and 'fma' in flags: simd, lanes = 'AVX2 FMA', 8
    elif 'avx' in flags: simd, lanes = 'AVX (no FMA)', 4
    else: simd, lanes = 'SSE', 2
    per_cycle = lanes * 2 * (2 if 'FMA' in simd else 1)      # lanes x (mul + add) x 2 FMA ports
    return dict(simd=simd, ghz=mhz / 1000, flop_per_cycle=per_cycle, cores=cores, gflops=cores * mhz / 1000 * per_cycle,
                amx_bf16='amx_bf16' in flags, avx512_bf16='avx512_bf16' in flags,
                assumption=f"{cores} core(s) x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle "
                           f"({simd}: {lanes} fp32 lanes x 2 (FMA) x 2 FMA units)")


def machine() -> dict:
    info = _lscpu()
    cuda = torch.cuda.is_available()
    try: load = Path('/proc/loadavg').read_text().split()[:3]
    except OSError: load = []
    return dict(cpu=info.get('Model name', platform.processor() or platform.machine()),
                cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                device=torch.cuda.get_device_name(0) if cuda else 'cpu (no CUDA here)',
                loadavg_at_start=' '.join(load), date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                platform=platform.platform())


# ---------------------------------------------------------------- 1. dataset
def bench_dataset(df, train, quick: bool) -> list[Row]:
    log("1. dataset")
    n_rep = 3 if quick else 10
    n_batches = len(batches(train, BATCH, drop_last=False))
    t_fast, _ = timed(lambda: [b for b in batches(train, BATCH, shuffle=True)], n_rep, warmup=2)
    base = DesignDocDataset(df, lookback=LOOKBACK)
    loader = torch.utils.data.DataLoader(base, batch_size=BATCH, shuffle=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(0))
    k = 1 if quick else 2                                  # batches of 64 per timing of the baseline
    n_base = 2 if quick else 3
    t_base, _ = timed(lambda: list(itertools.islice(iter(loader), k)), n_base, warmup=1)
    items_fast, items_base = len(train) / t_fast, k * BATCH / t_base
    epoch_base = len(train) / items_base
    note_base = (f"baseline: torch DataLoader(batch 64, shuffle, num_workers=0) over a `__getitem__` that runs "
                 f"calculate_price_features + calculate_technical_features on its 100-bar slice ({k} batches per timing); "
                 f"an epoch of {len(train)} windows would take {epoch_base:.0f} s that way vs {t_fast * 1e3:.1f} ms")
    return [
        Row('dataset', 'TradingDataset via `batches` (one gather per batch), items/s', items_fast, 'items/s',
            'design-doc per-item __getitem__ (indicators recomputed per 100-bar slice)', items_base,
            f"{n_rep} epochs / {n_base}", note_base),
        Row('dataset', 'TradingDataset via `batches`, batches/s', n_batches / t_fast, 'batches/s',
            'design-doc per-item __getitem__', items_base / BATCH, f"{n_rep} / {n_base}",
            f"{len(train)} training windows, {n_batches} batches of {BATCH}"),
    ]


# ---------------------------------------------------------------- panels
def bench_panel(quick: bool) -> list[Row]:
    "Features of a synthetic panel serial vs parallel vs read back from the cache; windows/s gathered from the panel"
    from trading_nb.data import make_synthetic_panel
    from trading_nb.panel import panel_features
    log("panels")
    n_sym = 200
    panel = make_synthetic_panel(n_sym, 1000, seed=0)
    panel_features(panel.loc[panel.index.unique('symbol')[:2]])          # numba's cache loaded in this process first
    n = 1 if quick else 3
    t_serial, _ = timed(lambda: panel_features(panel, n_jobs=1), n, warmup=0)
    t_par, _ = timed(lambda: panel_features(panel, n_jobs=2), n, warmup=1)   # the warm-up call starts the worker pool
    with tempfile.TemporaryDirectory() as cache:
        panel_features(panel, cache_dir=cache)
        t_cache, _ = timed(lambda: panel_features(panel, cache_dir=cache), 3 if quick else 10, warmup=1)
    train, _, _ = chronological_split(panel, lookback=LOOKBACK, target='excess')
    t_epoch, _ = timed(lambda: [b for b in batches(train, BATCH, shuffle=True)], 2 if quick else 5, warmup=1)
    sym = f"{n_sym} symbols x {len(panel) // n_sym} bars ({len(panel):,} rows)"
    return [
        Row('panels', f'panel features, 2 worker processes (joblib loky), s', t_par, 's', 'serial, 1 process', t_serial, f"{n}/{n}",
            f"{sym}; the same features bit for bit (tested); the ratio is the speed-up, bounded by the 2 cores", higher_is_better=False),
        Row('panels', 'panel features read back from the Parquet cache, s', t_cache, 's', 'serial computation', t_serial, f"{3 if quick else 10}/{n}",
            f"{sym}; cache keyed by the content hash of the bars and the indicator set", higher_is_better=False),
        Row('panels', 'panel windows via `batches`, items/s', len(train) / t_epoch, 'items/s', '-', None, f"{2 if quick else 5}",
            f"{len(train):,} training windows of {LOOKBACK} x {train.n_channels} across {n_sym} symbols, excess target, one gather per batch"),
    ]


# ---------------------------------------------------------------- 2. features
_COLD = r"""
import json, time
t0 = time.perf_counter()
from trading_nb.data import load_sample
from trading_nb.features import make_features
t1 = time.perf_counter()
df = load_sample('sp500')
t2 = time.perf_counter()
make_features(df)
t3 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, load=t2 - t1, first_call=t3 - t2)))
"""


def _fresh_process(cache_dir: str) -> dict:
    env = {**os.environ, 'NUMBA_CACHE_DIR': cache_dir}
    r = subprocess.run([sys.executable, '-c', _COLD], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode: raise RuntimeError(f"cold-start subprocess failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _talib_runner(df):
    import talib
    o, h, l, c = (df[k].to_numpy(dtype='float64') for k in ('open', 'high', 'low', 'close'))
    def run():
        talib.RSI(c, timeperiod=14)
        talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
        talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
        talib.ATR(h, l, c, timeperiod=14)
        talib.STOCH(h, l, c, fastk_period=14, slowk_period=3, slowd_period=3)
        talib.ADX(h, l, c, timeperiod=14); talib.PLUS_DI(h, l, c, timeperiod=14); talib.MINUS_DI(h, l, c, timeperiod=14)
    return run


def bench_features(df, quick: bool) -> list[Row]:
    log("2. features: cold start in fresh processes (empty numba cache, then the cache it wrote)")
    n_cold, n_cached = (1, 1) if quick else (2, 3)
    cold, cached = [], []
    for _ in range(n_cold):
        with tempfile.TemporaryDirectory(prefix='bench-numba-') as d:
            cold.append(_fresh_process(d))
            if not cached:                                  # the processes after it load the cache it wrote
                for _ in range(n_cached): cached.append(_fresh_process(d))
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    cold_call, cold_imp = med(cold, 'first_call'), med(cold, 'imports')
    cached_call, cached_imp = med(cached, 'first_call'), med(cached, 'imports')
    log("2. features: warm calls, pandas-ta vs TA-Lib")
    n = 5 if quick else 20
    t_warm, _ = timed(lambda: make_features(df), n, warmup=2)
    subset = [i for i in DEFAULT_INDICATORS if i['kind'] in TALIB_KINDS]
    t_sub, _ = timed(lambda: calculate_technical_features(df, subset), n, warmup=2)
    try:
        t_talib, _ = timed(_talib_runner(df), n, warmup=2)
        talib_note = "TA-Lib: RSI, MACD, BBANDS, ATR, STOCH, ADX + PLUS_DI + MINUS_DI on numpy arrays"
    except ImportError:
        t_talib, talib_note = None, "TA-Lib (`talib`) is not installed: no baseline"
    bars = len(df)
    return [
        Row('features', 'make_features, first call in a fresh process, EMPTY numba cache', cold_call, 's',
            'warm call (same process, compiled)', t_warm, f"{n_cold} / {n}",
            f"numba compiles pandas-ta's kernels; imports took a further {cold_imp:.2f} s", higher_is_better=False),
        Row('features', 'make_features, first call in a fresh process, numba cache filled', cached_call, 's',
            'first call with an EMPTY cache', cold_call, f"{n_cached} / {n_cold}",
            f"imports took a further {cached_imp:.2f} s (vs {cold_imp:.2f} s with an empty cache)", higher_is_better=False),
        Row('features', f'make_features warm: 10 price + 14 indicator columns on {bars} bars (pandas-ta, talib=False)', t_warm * 1e3, 'ms',
            'TA-Lib, the 6 indicators it has', None if t_talib is None else t_talib * 1e3, f"{n} / {n}",
            talib_note + "; make_features also validates, computes price features and volume_z, cuts the warm-up",
            higher_is_better=False),
        Row('features', 'calculate_technical_features, the same 6 indicators (pandas-ta, talib=False)', t_sub * 1e3, 'ms',
            'TA-Lib, the same 6 indicators', None if t_talib is None else t_talib * 1e3, f"{n} / {n}",
            "like for like: RSI 14, MACD 12/26/9, BBANDS 20/2, ATR 14, STOCH 14/3/3, ADX 14 (+DI, -DI)",
            higher_is_better=False),
    ]


# ---------------------------------------------------------------- 3. training
def lstm_flops_per_sample(cfg: ModelConfig) -> int:
    "Forward FLOPs of the LSTM for one window: per layer and step 2 x 4H x (in + H) multiply-adds (gates' elementwise ops left out)"
    H, total = cfg.hidden_size, 0
    for layer in range(cfg.num_layers):
        inp = cfg.conv_channels if layer == 0 else H
        total += 2 * 4 * H * (inp + H) * cfg.lookback
    return total


def train_flops_per_sample(model: TradingModel, train) -> dict:
    "FLOPs of one training step per sample: `FlopCounterMode` on forward + backward, plus the LSTM analytically if not counted"
    from torch.utils.flop_counter import FlopCounterMode
    b = next(iter(batches(train, BATCH)))
    model.train()
    fc = FlopCounterMode(display=False)
    with fc:
        out = model(b['sequence'], b['indicators'])
        out.float().sum().backward()
    model.zero_grad(set_to_none=True)
    ops = {str(k): int(v) for k, v in fc.get_flop_counts()['Global'].items()}
    counted = fc.get_total_flops() / BATCH
    lstm_seen = any('lstm' in k or 'rnn' in k for k in ops)
    lstm_fwd = lstm_flops_per_sample(model.config)
    added = 0 if lstm_seen else 3 * lstm_fwd                 # backward ~ 2x forward (input and weight gradients)
    return dict(counted=counted, lstm_counted=lstm_seen, lstm_added=added, total=counted + added, ops=ops,
                lstm_forward=lstm_fwd)


def _train_rate(model, train, amp_dtype, threads: int, n_batches: int, repeats: int) -> float:
    "Training samples/s: `train_epoch` on `n_batches` shuffled batches, median of `repeats` after 3 warm-up batches"
    torch.set_num_threads(threads)
    device = torch.device('cpu')
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    crit = nn.CrossEntropyLoss()
    seed = itertools.count()
    run = lambda k: train_epoch(model, itertools.islice(iter(batches(train, BATCH, shuffle=True, seed=next(seed))), k),
                                opt, device, crit, None, amp_dtype, None, 1.0)
    run(3)
    t, _ = timed(lambda: run(n_batches), repeats, warmup=0)
    return n_batches * BATCH / t


def bench_training(train, quick: bool) -> tuple[list[Row], dict]:
    log("3. training on the CPU")
    set_seed(0)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim,
                      lookback=LOOKBACK)
    model = TradingModel(cfg)
    fl = train_flops_per_sample(model, train)
    default_threads = torch.get_num_threads()
    cores = os.cpu_count() or 1
    n_batches, repeats = (4, 1) if quick else (10, 3)
    bf16 = torch.bfloat16                                # measured on every CPU; the default (amp_dtype_for) uses it only where it pays
    thread_opts = sorted({1, min(2, cores), default_threads})
    rates = {}
    for dtype, name in ((None, 'fp32'), (bf16, 'bf16 autocast')):
        for th in thread_opts:
            log(f"   {name}, {th} thread(s)")
            rates[(name, th)] = _train_rate(model, train, dtype, th, n_batches, repeats)
    torch.set_num_threads(default_threads)
    rows = []
    nrep = f"{repeats} x {n_batches} batches"
    best_th = max(thread_opts, key=lambda th: rates[('fp32', th)])
    for name in ('fp32', 'bf16 autocast'):
        for th in thread_opts:
            if name == 'fp32' and th == 1 and len(thread_opts) > 1: continue   # the baseline of the thread rows
            base = ('fp32', th) if name != 'fp32' else ('fp32', 1)
            rows.append(Row('training', f'train_epoch samples/s, {name}, {th} thread(s), lookback {LOOKBACK}, batch {BATCH}',
                            rates[(name, th)], 'samples/s', f'{base[0]}, {base[1]} thread(s)', rates[base], f"{nrep} each",
                            f"{len(train)} windows per epoch: {len(train) / rates[(name, th)]:.0f} s per epoch at this rate"))
    if len(thread_opts) == 1:
        rows.insert(0, Row('training', f'train_epoch samples/s, fp32, 1 thread', rates[('fp32', 1)], 'samples/s',
                           '(one core only)', None, nrep))
    for name in ('fp32', 'bf16 autocast'):
        for th in thread_opts:
            peak = cpu_peak(th)
            gf = rates[(name, th)] * fl['total'] / 1e9
            rows.append(Row('training', f'achieved GFLOP/s, {name}, {th} thread(s)', gf, 'GFLOP/s',
                            f'peak fp32 of {th} core(s) ({peak["simd"]})', peak['gflops'], nrep,
                            f"{fl['total'] / 1e6:.1f} MFLOP per training sample; peak = {peak['assumption']}"))
    return rows, dict(flops=fl, rates={f"{k[0]}, {k[1]} thread(s)": v for k, v in rates.items()}, best_fp32_threads=best_th)


def bench_attention(train, quick: bool) -> list[Row]:
    "The head reads the last step only: attention for that one query vs for every step (outputs equal, tested in 04_model)"
    log("3a. attention for the last position only vs for all positions")
    set_seed(0)
    model = TradingModel(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators,
                                     output_dim=train.output_dim, lookback=LOOKBACK)).train()
    seq = next(iter(batches(train, BATCH)))['sequence']
    def step(last: bool):
        model.zero_grad(set_to_none=True)
        model.encode(seq, last_query_only=last)[:, -1].sum().backward()
    n = 5 if quick else 20
    t_last, _ = timed(lambda: step(True), n, warmup=2)
    t_full, _ = timed(lambda: step(False), n, warmup=2)
    return [Row('model', f'encoder forward+backward, attention for the last step only, batch {BATCH}, lookback {LOOKBACK}',
                t_last * 1e3, 'ms', 'attention for all steps (the design document\'s way)', t_full * 1e3, f'{n} / {n}',
                f'{torch.get_num_threads()} thread(s); the predictor reads only the last step, so both give the same output',
                higher_is_better=False)]


# ---------------------------------------------------------------- 3b. GPU
def bench_gpu(train, quick: bool) -> list[Row]:
    if not torch.cuda.is_available():
        return [Row('gpu', 'GPU training rows (fp32 vs AMP bf16, eager vs torch.compile)', None, '', 'no CUDA here', None, '-',
                    'skipped: torch.cuda.is_available() is False')]
    log("3b. GPU training")
    dev = torch.device('cuda')
    name = torch.cuda.get_device_name(0)
    amp = amp_dtype_for(dev)
    n_batches, repeats = (10, 1) if quick else (50, 3)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=LOOKBACK)
    rates, notes = {}, {}
    for compiled in (False, True):
        for dtype in (None, amp):
            key = (('compile' if compiled else 'eager'), 'fp32' if dtype is None else str(dtype).replace('torch.', '') + ' autocast')
            try:
                set_seed(0)
                model = TradingModel(cfg).to(dev)
                runner = torch.compile(model) if compiled else model
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                crit = nn.CrossEntropyLoss()
                seed = itertools.count()
                def run(k):
                    train_epoch(runner, itertools.islice(iter(batches(train, BATCH, shuffle=True, seed=next(seed), device=dev)), k),
                                opt, dev, crit, None, dtype, None, 1.0)
                    torch.cuda.synchronize()
                t0 = time.perf_counter(); run(5); warm = time.perf_counter() - t0
                t, _ = timed(lambda: run(n_batches), repeats, warmup=0)
                rates[key] = n_batches * BATCH / t
                notes[key] = f"warm-up (5 batches{', compiling' if compiled else ''}) {warm:.1f} s"
            except Exception as e:            # a failing variant is reported, not fatal
                rates[key], notes[key] = None, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:150]}"
    base = rates.get(('eager', 'fp32'))
    return [Row('gpu', f'train_epoch samples/s on {name}, {k[0]}, {k[1]}, batch {BATCH}', v, 'samples/s', 'eager fp32', base,
                f"{repeats} x {n_batches} batches", notes[k]) for k, v in rates.items()]


# ---------------------------------------------------------------- 4. inference
def bench_inference(df, train, quick: bool) -> list[Row]:
    from trading_nb.inference import export_model, predict, setup_inference
    log("4. inference")
    set_seed(0)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=LOOKBACK)
    rows = []
    with tempfile.TemporaryDirectory(prefix='bench-model-') as d:
        im = setup_inference(export_model(TradingModel(cfg), Path(d) / 'model.pt', train, data=df), device='cpu')
    H = im.history_bars
    n_win, n_win1 = (300, 30) if quick else (1000, 100)
    frame = df.iloc[-(H + n_win - 1):]
    n = 2 if quick else 3
    t_batch, _ = timed(lambda: predict(im, frame), n, warmup=1)
    frame1 = df.iloc[-(H + n_win1 - 1):]
    t_one, _ = timed(lambda: predict(im, frame1, batch_size=1), n, warmup=1)
    rows.append(Row('inference', f'predict on a frame: windows/s ({n_win} windows, batch 1024, features included)', n_win / t_batch,
                    'windows/s', f'predict with batch_size=1 ({n_win1} windows)', n_win1 / t_one, f"{n} / {n}",
                    f"{torch.get_num_threads()} thread(s); untrained weights (speed does not depend on them)"))
    # the stream (features, the traced and the eager forward pass, the whole bar, many symbols per tick): bench_stream.py, at 1 thread
    return rows


# ---------------------------------------------------------------- 5. end to end
def _cli() -> str | None:
    exe = Path(sys.executable).parent / 'trading-nb'
    return str(exe) if exe.exists() else shutil.which('trading-nb')


def _train_run(exe: str, timeout: float, env: dict | None = None) -> dict:
    "Wall time of `trading-nb train --data sp500 --out TMP` (defaults) and what its history says about the epochs"
    with tempfile.TemporaryDirectory(prefix='bench-e2e-') as d:
        t0 = time.perf_counter()
        try:
            r = subprocess.run([exe, 'train', '--data', 'sp500', '--out', d], capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, **(env or {})})
            wall, status = time.perf_counter() - t0, ('ok' if r.returncode == 0 else f'exit code {r.returncode}: {r.stderr.strip()[-300:]}')
            tail = (r.stdout + r.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            wall, status, tail = time.perf_counter() - t0, f'stopped at the {timeout:.0f} s limit: the figure is a lower bound', ''
        info = dict(wall_s=wall, status=status, output_tail=tail, files=sorted(p.name for p in Path(d).rglob('*') if p.is_file()))
        try:
            hist = pd.read_csv(Path(d) / 'history.csv')
            info.update(epochs=len(hist), epoch_seconds=hist['seconds'].tolist(), train_seconds=float(hist['seconds'].sum()),
                        samples_per_s=float(hist['samples_per_s'].median()))
            info['training'] = json.loads((Path(d) / 'metrics.json').read_text()).get('training', {})
        except (OSError, KeyError, ValueError): pass
    return info


def _describe(info: dict) -> str:
    out = info['status']
    if 'train_seconds' in info:
        out += (f"; {info['epochs']} epochs ({info['training'].get('amp', '?')}, {info['training'].get('device', '?')}) took "
                f"{info['train_seconds']:.0f} s of it ({info['train_seconds'] / info['wall_s']:.0%}), median {info['samples_per_s']:.0f} samples/s")
    return out


def bench_e2e(budget: float) -> tuple[list[Row], dict]:
    log("5. end to end")
    exe = _cli()
    name = '`trading-nb train --data sp500 --out DIR` (defaults), wall time'
    has_train = exe is not None and subprocess.run([exe, 'train', '--help'], capture_output=True).returncode == 0
    if not has_train:
        return [Row('end to end', name, None, 's', 'skipped', None, '-',
                    'skipped: the `trading-nb train` command does not exist yet in this checkout', higher_is_better=False)], {}
    t0 = time.perf_counter()
    subprocess.run([exe, 'summary', '--data', 'sp500'], capture_output=True, text=True)
    t_floor = time.perf_counter() - t0
    log("   with OMP_NUM_THREADS=1")
    one = _train_run(exe, max(60.0, min(240.0, budget / 2)), dict(OMP_NUM_THREADS='1'))
    left = max(60.0, budget - (time.perf_counter() - t0))
    log(f"   with the default threads (at most {left:.0f} s)")
    dflt = _train_run(exe, left)
    rows = [Row('end to end', name, dflt['wall_s'], 's', 'the same with OMP_NUM_THREADS=1', one['wall_s'], '1 / 1',
                f"default threads ({torch.get_num_threads()}): {_describe(dflt)}; with 1 thread: {_describe(one)}", higher_is_better=False),
            Row('end to end', '`trading-nb train` (defaults) with OMP_NUM_THREADS=1, wall time', one['wall_s'], 's',
                '`trading-nb summary --data sp500` (start-up floor)', t_floor, '1 / 1',
                "the floor is process start, imports, load + validate", higher_is_better=False)]
    return rows, dict(default=dflt, one_thread=one, summary_s=t_floor)


# ---------------------------------------------------------------- output
def _fmt(v) -> str:
    if v is None: return '-'
    if isinstance(v, float):
        if v != v: return 'nan'
        a = abs(v)
        return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"
    return str(v)


def _ratio(r: Row) -> str:
    if r.ratio is None: return '-'
    word = ''
    if r.unit in ('s', 'ms'): word = f" ({1 / r.ratio:.1f}x faster)" if r.ratio < 1 else f" ({r.ratio:.1f}x slower)"
    elif r.unit == 'GFLOP/s': word = f" ({r.ratio:.1%} of peak)"
    elif r.ratio > 0: word = f" ({r.ratio:.1f}x)" if r.ratio >= 1 else f" ({1 / r.ratio:.1f}x slower)"
    return f"{r.ratio:.3g}{word}"


def write(rows: list[Row], mach: dict, extra: dict, out: Path, elapsed: float):
    out.mkdir(parents=True, exist_ok=True)
    data = dict(machine=mach, elapsed_s=elapsed, rows=[{**asdict(r), 'ratio': r.ratio} for r in rows], extra=extra)
    (out / 'results.json').write_text(json.dumps(data, indent=1, default=str) + '\n')
    m = mach
    lines = [
        '# trading_nb benchmarks', '',
        f"Written by `make bench` (`bench/run.py`) in {elapsed:.0f} s. Each figure is beside a baseline measured in the same run; "
        "times are medians of n repeats after warm-up calls (n: figure / baseline). ratio = figure / baseline figure "
        "(for times, below 1 is faster; for GFLOP/s, the share of the peak).", '',
        '## Machine', '',
        f"- CPU: {m['cpu']}, {m['cores']} cores; torch CPU capability {m['torch_cpu_capability']}",
        f"- torch {m['torch']}, Python {m['python']}, {m['threads']} torch threads by default",
        f"- device: {m['device']}",
        f"- load average at start: {m['loadavg_at_start']} (other processes on the cores slow every figure, most of all 2-thread runs)",
        f"- date: {m['date']}", f"- peak assumed: {cpu_peak(m['cores'])['assumption']}", '',
        '## Results', '',
        '| # | section | row | figure | unit | baseline | baseline figure | ratio | n |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r.section} | {r.row} | {_fmt(r.figure)} | {r.unit} | {r.baseline} | {_fmt(r.baseline_figure)} | {_ratio(r)} | {r.n} |")
    lines += ['', '## Notes per row', '']
    for i, r in enumerate(rows, 1):
        if r.note: lines.append(f"{i}. {r.note}")
    fl = extra.get('training', {}).get('flops')
    if fl:
        lines += ['', '## FLOPs of one training sample', '',
                  f"`torch.utils.flop_counter.FlopCounterMode` on a forward + backward pass counted {fl['counted'] / 1e6:.1f} MFLOP per sample "
                  f"({', '.join(f'{k} {v / BATCH / 1e6:.1f}' for k, v in fl['ops'].items())}). "
                  + ("It did not count the LSTM (no LSTM op in its table), so the LSTM's "
                     f"{fl['lstm_forward'] / 1e6:.1f} MFLOP forward (2 x 4H x (in + H) per layer and step) x 3 (forward + backward) = "
                     f"{fl['lstm_added'] / 1e6:.1f} MFLOP is added analytically" if not fl['lstm_counted'] else "It counted the LSTM.")
                  + f": {fl['total'] / 1e6:.1f} MFLOP per sample in all."]
    if extra.get('findings'):
        lines += ['', '## Where the time goes', ''] + [f"- {f}" for f in extra['findings']]
    (out / 'results.md').write_text('\n'.join(lines) + '\n')


def findings(rows: list[Row], extra: dict) -> list[str]:
    "Plain statements derived from this run's figures"
    get = lambda sec, start: next((r for r in rows if r.section == sec and r.row.startswith(start)), None)
    out = []
    tr = extra.get('training', {})
    rates = tr.get('rates', {})
    n_train = extra.get('n_train')
    if rates and n_train:
        best = max(rates, key=rates.get)
        out.append(f"Training dominates: one epoch of {n_train} windows takes {n_train / rates[best]:.0f} s at the best CPU setting "
                   f"({best}: {rates[best]:.0f} samples/s) and {n_train / min(rates.values()):.0f} s at the worst, against "
                   f"{_fmt(get('features', 'make_features warm').figure)} ms for all features and "
                   f"{n_train / get('dataset', 'TradingDataset via `batches` (one gather').figure * 1e3:.1f} ms to gather an epoch's batches.")
        fl = tr.get('flops')
        if fl: out.append(f"The LSTM is {fl['lstm_added'] / fl['total']:.0%} of a training sample's FLOPs; the rest is the attention "
                          "projections, the conv and the heads.")
        f1, f2 = rates.get('fp32, 1 thread(s)'), rates.get('fp32, 2 thread(s)')
        if f1 and f2: out.append(f"Threads: fp32 training at 2 threads runs at {f2 / f1:.2f}x the 1-thread rate on this machine "
                                 "(with a load average near the core count, 2 OpenMP threads wait on each other).")
        b1 = rates.get('bf16 autocast, 1 thread(s)')
        if f1 and b1: out.append(f"bf16 autocast trains at {b1 / f1:.2f}x the fp32 rate (1 thread).")
    e2e, info = get('end to end', '`trading-nb train --data'), extra.get('e2e', {}).get('default', {})
    if e2e and e2e.figure:
        bound = 'more than ' if info.get('status', '').startswith('stopped') else ''
        msg = f"End to end, `trading-nb train` with defaults took {bound}{e2e.figure:.0f} s"
        if 'train_seconds' in info:
            msg += (f", of which {info['epochs']} training epochs took {info['train_seconds']:.0f} s ({info['train_seconds'] / e2e.figure:.0%}); "
                    f"the rest (start-up, features, validation, baselines, bootstrap, export, report) {e2e.figure - info['train_seconds']:.0f} s")
        out.append(msg + '.')
        one = extra['e2e'].get('one_thread', {})
        if one.get('wall_s'): out.append(f"The same command with OMP_NUM_THREADS=1 took {one['wall_s']:.0f} s ({one['status']}).")
    b50, b99 = get('stream', 'whole streamed bar (StreamState.update), traced, p50'), get('stream', 'whole streamed bar (StreamState.update), traced, p99')
    f50, scratch = get('stream', 'forward pass, batch 1: traced'), get('stream', 'whole streamed bar, traced, p50')
    part, feat = get('stream', 'a streamed bar without its forward pass'), get('stream', 'features of a streamed bar, default set')
    if b50 and b99 and f50 and scratch:
        out.append(f"Streaming (design sizes, 1 thread): a whole bar costs {b50.figure:.2f} ms p50 / {b99.figure:.2f} ms p99 through the traced "
                   f"graph ({b50.baseline_figure:.2f} / {b99.baseline_figure:.2f} ms eager), {scratch.baseline_figure / scratch.figure:.0f}x less "
                   f"than recomputing from scratch ({scratch.baseline_figure:.0f} ms p50). The forward pass is {f50.figure:.2f} ms of it "
                   f"({f50.baseline_figure:.2f} ms eager)" + (f", the features {feat.figure:.0f} us" if feat else '')
                   + (f", and all the rest outside the model {part.figure:.2f} ms" if part else '')
                   + f". The p99 <= 5 ms goal is {'met' if b99.figure <= 5 else 'not met'} in this run; p99 moves with the load average.")
    cold = get('features', 'make_features, first call in a fresh process, EMPTY')
    cached = get('features', 'make_features, first call in a fresh process, numba cache filled')
    if cold and cached: out.append(f"Start-up: the first feature call compiles numba kernels for {cold.figure:.1f} s with an empty cache "
                                   f"and takes {cached.figure:.2f} s once the cache is filled.")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(HERE), help='folder for results.md and results.json (default: bench/)')
    p.add_argument('--quick', action='store_true', help='fewer repeats (a smoke run; not for reporting)')
    p.add_argument('--skip-e2e', action='store_true', help='skip the end-to-end `trading-nb train` row')
    p.add_argument('--budget', type=float, default=540, help='seconds the whole run may take; the end-to-end row gets what is left')
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    mach = machine()
    log(f"{mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}, {mach['threads']} threads, {mach['device']}, load {mach['loadavg_at_start']}")
    df = load_sample('sp500')
    train, _, _ = chronological_split(df, lookback=LOOKBACK)
    rows = bench_dataset(df, train, args.quick)
    rows += bench_features(df, args.quick)
    tr_rows, tr_extra = bench_training(train, args.quick)
    rows += tr_rows
    rows += bench_attention(train, args.quick)
    rows += bench_gpu(train, args.quick)
    rows += bench_inference(df, train, args.quick)
    rows += bench_panel(args.quick)
    import bench_stream                                  # streaming: incremental features, whole streamed bar, many symbols per tick
    rows += bench_stream.bench_incremental(args.quick, Row, timed) + bench_stream.bench_stream(args.quick, Row, timed, train=train)
    import bench_ddp                                     # torchrun: 1 vs 2 CPU processes; 1 GPU vs all GPUs where CUDA is
    rows += bench_ddp.bench_ddp(args.quick, Row, timed)
    extra = dict(training=tr_extra, n_train=len(train))
    if args.skip_e2e:
        rows.append(Row('end to end', '`trading-nb train --data sp500 --out DIR` (defaults), wall time', None, 's', 'skipped', None, '-',
                        'skipped with --skip-e2e', higher_is_better=False))
    else:
        left = max(60.0, args.budget - (time.perf_counter() - t_start))
        e_rows, e_extra = bench_e2e(left)
        rows += e_rows; extra['e2e'] = e_extra
    extra['findings'] = findings(rows, extra)
    write(rows, mach, extra, Path(args.out), time.perf_counter() - t_start)
    log(f"wrote {Path(args.out) / 'results.md'} and results.json in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
