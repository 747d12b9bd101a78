"""Streaming: a bar's features, the whole streamed bar, and many symbols per tick, each beside its baseline in the same run.

`bench_incremental(quick)`: one `IncrementalFeatures.update` per bar against `make_features` over the bars a stream holds.
`bench_stream(quick)`: at the design document's sizes (lookback 100, the default model, untrained weights, 1 torch thread):
the forward pass (batch 1) through the traced, frozen TorchScript graph against eager; the whole streamed bar
(`StreamState.update`) p50/p99 traced against eager on the same bars (interleaved), against recomputing everything from
scratch and against the previous stream (pandas-ta over the warm-up + 1 held bars, then the forward pass); the bar without its
forward pass; 500 symbols per tick, one batched forward pass (`StreamStates.update`) traced and eager, and one forward pass
per symbol. Both return rows (common.py's `Row`, timed by its `timed`) for bench/run.py's results table. The rows note the load average.
Run alone: `.venv/bin/python bench/bench_stream.py [--quick]` prints the rows. Nothing here asserts a time.
"""
from __future__ import annotations
import os, statistics, sys, time

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trading_nb.data import OHLCV_COLS, load_sample, make_synthetic_panel
from trading_nb.dataset import chronological_split
from trading_nb.features import calculate_price_features, calculate_technical_features, make_features, warmup_bars
from trading_nb.incremental import CAUSAL_INDICATORS, IncrementalFeatures
from trading_nb.model import ModelConfig, TradingModel
from common import Row, timed


def _update_times(df, indicators, n_bars: int) -> list[float]:
    "Seconds of each `update` on `n_bars` bars, the state warmed on the bars before them"
    k = warmup_bars(indicators) + 1
    st = IncrementalFeatures(indicators).warm(df.iloc[-(k + n_bars):-n_bars])
    out = []
    for bar in df[list(OHLCV_COLS)].to_numpy(dtype='float64')[-n_bars:]:
        t = time.perf_counter(); st.update(*bar); out.append(time.perf_counter() - t)
    return out


def bench_incremental(quick: bool) -> list:
    "Features of a streamed bar: incremental update vs make_features over the held bars (warm-up + 1), default set and every causal kind"
    df = load_sample('sp500')
    n_bars, n_batch = (300, 10) if quick else (2000, 40)
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start"
    rows = []
    for name, inds in (('default set', None), ('every causal kind', CAUSAL_INDICATORS)):
        held = df.iloc[-(warmup_bars(inds) + 1):]
        t_batch, batch_ts = timed(lambda: make_features(held, inds), n_batch, warmup=2)
        us = np.asarray(_update_times(df, inds, n_bars)) * 1e6
        width = len(IncrementalFeatures(inds).columns)
        rows.append(Row('stream', f'features of a streamed bar, {name} ({width} columns): IncrementalFeatures.update p50',
                        float(np.median(us)), 'us', f'make_features over the {len(held)} held bars, p50', t_batch * 1e6,
                        f"{n_bars} / {n_batch}", f"one bar in, one row out, equal to make_features to 1e-9; {load}",
                        higher_is_better=False))
        rows.append(Row('stream', f'features of a streamed bar, {name}: update p99', float(np.percentile(us, 99)), 'us',
                        'make_features over the held bars, p99', float(np.percentile(np.asarray(batch_ts) * 1e6, 99)),
                        f"{n_bars} / {n_batch}", "p99 of a few hundred bars sits near the worst few", higher_is_better=False))
    return rows


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _design_model(df, train):
    "An exported, reloaded default-size model (lookback 100, untrained weights: speed does not depend on them)"
    from trading_nb.inference import export_model, setup_inference
    train = train if train is not None and train.lookback == 100 else chronological_split(df, lookback=100)[0]
    torch.manual_seed(0)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=100)
    with tempfile.TemporaryDirectory(prefix='bench-stream-') as d:
        return setup_inference(export_model(TradingModel(cfg), Path(d) / 'model.pt', train, data=df), device='cpu')


def _previous_stream(im, held: pd.DataFrame, window: np.ndarray):
    "The stream before incremental features: the newest row by pandas-ta over the `warmup + 1` held bars, then the forward pass"
    from trading_nb.inference import _forward
    f = pd.concat([calculate_price_features(held), calculate_technical_features(held, im.indicators)], axis=1)[im.feature_names]
    row = ((f.iloc[-1].to_numpy('float64') - np.asarray(im.scaler['mean'])) / np.asarray(im.scaler['scale'])).astype(np.float32)
    seq = torch.from_numpy(np.concatenate([window[1:], row[None]]))[None]
    return _forward(im, seq, seq[:, -1, len(im.feature_names) - len(im.indicator_names):])


def _from_scratch(im, history: pd.DataFrame):
    "The last bar's prediction from make_features over the whole history, then the forward pass"
    from trading_nb.inference import _forward, _windows
    seq, ind, _ = _windows(im, history)
    return _forward(im, seq[-1:], ind[-1:])


def _ms(xs, q: float) -> float: return float(np.percentile(np.asarray(xs) * 1e3, q))


def bench_stream(quick: bool, train=None) -> list:
    "The whole streamed bar at the design sizes, traced and eager, against recompute-from-scratch and the previous stream; 500 symbols per tick"
    from trading_nb.inference import StreamState, StreamStates, _forward, _split_bar, _step, _ticks
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        df = load_sample('sp500')
        im = _design_model(df, train)                     # jit on: the CPU default; switched off for the eager figures
        H, end = im.history_bars, len(df)
        n, n_prev, n_scratch = (60, 10, 5) if quick else (400, 40, 20)
        load0 = _load()
        # one series: the same bars through a traced and an eager stream (which goes first alternates), the forward pass
        # alone both ways on the same window, the bar without its forward pass, and the two older ways
        hist = df.iloc[end - n - H:end - n]
        traced, eager, part = (StreamState(im, history=hist) for _ in range(3))
        w0 = torch.from_numpy(traced.window.copy())[None]
        for jit in (True, False, True, False):            # warm both paths (the graph is built already, when the states were made)
            im.jit = jit; _forward(im, w0, w0[:, -1, traced.n_price:])
        t = {k: [] for k in ('bar_jit', 'bar_eager', 'part', 'fwd_jit', 'fwd_eager', 'prev', 'scratch')}
        gap = 0.0
        for i in range(end - n, end):
            bar = (df.index[i], df.iloc[i])
            ans = {}
            for jit in ((True, False) if i % 2 else (False, True)):
                im.jit, st = jit, (traced if jit else eager)
                t0 = time.perf_counter(); ans[jit] = st.update(bar); t['bar_jit' if jit else 'bar_eager'].append(time.perf_counter() - t0)
            if not all(a['status'] == 'ok' for a in ans.values()): raise RuntimeError(f"the stream did not predict: {ans}")
            gap = max(gap, abs(ans[True]['p_up'] - ans[False]['p_up']))
            t0 = time.perf_counter(); _, ts, row = _split_bar(bar, part._names); _step(part, ts, row); t['part'].append(time.perf_counter() - t0)
            w = torch.from_numpy(traced.window.copy())[None]
            for jit in ((True, False) if i % 2 else (False, True)):
                im.jit = jit
                t0 = time.perf_counter(); _forward(im, w, w[:, -1, traced.n_price:]); t['fwd_jit' if jit else 'fwd_eager'].append(time.perf_counter() - t0)
            im.jit = True
            if i >= end - n_prev:
                t0 = time.perf_counter(); _previous_stream(im, df.iloc[i - im.warmup:i + 1], traced.window); t['prev'].append(time.perf_counter() - t0)
            if i >= end - n_scratch:
                t0 = time.perf_counter(); _from_scratch(im, df.iloc[:i + 1]); t['scratch'].append(time.perf_counter() - t0)
        load1 = _load()
        size = f"lookback {im.lookback}, default model ({sum(p.numel() for p in im.model.parameters()):,} parameters), 1 torch thread"
        p99 = _ms(t['bar_jit'], 99)
        goal = f"goal p99 <= 5 ms: {'met' if p99 <= 5 else 'not met'} ({p99:.2f} ms) at this load"
        rows = []
        for q in (50, 99):
            rows.append(Row('stream', f'forward pass, batch 1: traced + frozen TorchScript graph, p{q}', _ms(t['fwd_jit'], q), 'ms',
                            f'eager, p{q}', _ms(t['fwd_eager'], q), f"{n} / {n}",
                            f"{size}; the same windows, interleaved; {load0} at the start" if q == 50 else f"{load1} after the single-series rows",
                            higher_is_better=False))
        for q in (50, 99):
            rows.append(Row('stream', f'whole streamed bar (StreamState.update), traced, p{q}', _ms(t['bar_jit'], q), 'ms',
                            f'the same stream eager (jit=False), p{q}', _ms(t['bar_eager'], q), f"{n} / {n}",
                            f"the same bars, interleaved; max |p_traced - p_eager| {gap:.1e}" if q == 50 else goal, higher_is_better=False))
        for q in (50, 99):
            rows.append(Row('stream', f'whole streamed bar, traced, p{q}', _ms(t['bar_jit'], q), 'ms',
                            f'recompute from scratch: make_features over ~{end:,} bars + forward, p{q}', _ms(t['scratch'], q),
                            f"{n} / {n_scratch}", "the goal: >= 5x faster" if q == 50 else f"the baseline's p99 of n={n_scratch} sits near its worst",
                            higher_is_better=False))
        rows.append(Row('stream', 'whole streamed bar, traced, p50', _ms(t['bar_jit'], 50), 'ms',
                        f'previous stream: pandas-ta over the {im.warmup + 1} held bars + forward, p50', _ms(t['prev'], 50),
                        f"{n} / {n_prev}", "the stream before incremental features", higher_is_better=False))
        for q in (50, 99):
            rows.append(Row('stream', f'a streamed bar without its forward pass (parse, checks, incremental features, normalization, window), p{q}',
                            _ms(t['part'], q), 'ms', f'the forward pass, traced, p{q}', _ms(t['fwd_jit'], q), f"{n} / {n}",
                            "what is left outside the model", higher_is_better=False))
        # many symbols: ticks in turn batched traced, batched eager, and one bar (one traced forward pass) at a time, on the same states
        n_sym, n_ticks = 500, (6 if quick else 9)
        uni = make_synthetic_panel(n_sym, H - 1 + n_ticks, seed=1)
        days = uni.index.get_level_values('date')
        first = days.unique()[H - 1]
        t0 = time.perf_counter(); ss = StreamStates(im, history=uni[days < first]); t_start = time.perf_counter() - t0
        seq = torch.from_numpy(np.stack([s.window for s in ss.states.values()]))
        ind = seq[:, -1, traced.n_price:]
        f = {}
        for jit in (True, False):
            im.jit = jit
            f[jit], _ = timed(lambda: _forward(im, seq, ind), 2 if quick else 4, warmup=1)
        im.jit = True
        f_single, _ = timed(lambda: [_forward(im, seq[j:j + 1], ind[j:j + 1]) for j in range(n_sym)], 1, warmup=0)
        load2 = _load()
        kinds = ('batched traced', 'batched eager', 'one at a time')
        ticks = {k: [] for k in kinds}
        for k, tick in enumerate(_ticks(uni[days >= first])):
            kind = kinds[k % 3]
            im.jit = kind != 'batched eager'
            t0 = time.perf_counter()
            out = ss.update(tick) if kind != 'one at a time' else [ss.update(bar)[0] for bar in tick]
            ticks[kind].append(time.perf_counter() - t0)
            if not all(a['status'] == 'ok' for a in out): raise RuntimeError("a symbol did not predict")
        im.jit = True
        b, e, s1 = (statistics.median(ticks[k]) for k in kinds)
        note = f"{n_sym} synthetic symbols, each started from {H - 1} bars ({t_start:.0f} s); {size}; {load2}"
        nt = f"{len(ticks[kinds[0]])} / {len(ticks[kinds[1]])}"
        rows += [Row('stream', f'{n_sym} symbols per tick, one batched forward pass (StreamStates.update), traced: s per tick', b, 's',
                     'the same, eager: s per tick', e, nt, note, higher_is_better=False),
                 Row('stream', f'{n_sym} symbols per tick, batched, traced: ms per symbol', b * 1e3 / n_sym, 'ms',
                     'the same, eager: ms per symbol', e * 1e3 / n_sym, nt, "features included", higher_is_better=False),
                 Row('stream', f'{n_sym} symbols per tick, batched, traced: s per tick', b, 's',
                     'one forward pass per symbol (traced), s per tick', s1, f"{len(ticks[kinds[0]])} / {len(ticks[kinds[2]])}",
                     "batching is the larger gain with many symbols", higher_is_better=False),
                 Row('stream', f'{n_sym} symbols: the forward pass alone, one batch of {n_sym} windows, traced', f[True], 's',
                     'the same batch eager', f[False], f"{2 if quick else 4} / {2 if quick else 4}",
                     f"{n_sym} traced forward passes of one window: {f_single:.2f} s; {_load()} at the end", higher_is_better=False)]
        return rows
    finally:
        torch.set_num_threads(threads)


if __name__ == '__main__':
    print(f"{_load()} at the start; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for r in bench_incremental('--quick' in sys.argv) + bench_stream('--quick' in sys.argv):
        ratio = r.baseline_figure / r.figure if r.figure and r.baseline_figure else float('nan')
        print(f"{r.row}: {r.figure:.4g} {r.unit} vs {r.baseline}: {r.baseline_figure:.4g} {r.unit} ({ratio:.1f}x)  [{r.n}; {r.note}]")
