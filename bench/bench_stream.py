"""Streaming: a bar's features, the whole streamed bar, and many symbols per tick, each beside its baseline in the same run.

`bench_incremental(quick)`: one `IncrementalFeatures.update` per bar against `make_features` over the bars a stream holds.
`bench_stream(quick)`: at the design document's sizes (lookback 100, the default model, untrained weights, 1 torch thread)
a streamed bar without its forward pass against the forward pass; the whole streamed bar (`StreamState.update`) p50/p99
against the previous stream (pandas-ta over the warm-up + 1 held bars, then the forward pass) and against recomputing
everything from scratch; 500 symbols per tick, one batched forward pass (`StreamStates.update`) against one per symbol.
Both return rows for bench/run.py's results table. Pass run.py's `Row` and `timed` to get its own row objects and timing;
without them it uses the minimal versions below (same fields, same median-of-n rule). Every row notes the load average.
Run alone: `.venv/bin/python bench/bench_stream.py [--quick]` prints the rows. Nothing here asserts a time.
"""
from __future__ import annotations
import os, statistics, sys, time
from dataclasses import dataclass

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


@dataclass
class _Row:
    "The fields of bench/run.py's `Row`, for running this file alone"
    section: str
    row: str
    figure: float | None
    unit: str
    baseline: str
    baseline_figure: float | None
    n: str
    note: str = ''
    higher_is_better: bool = True


def _timed(fn, n: int, warmup: int = 1) -> tuple[float, list[float]]:
    "Median wall time of `fn()` over `n` calls after `warmup` untimed calls, and all the times"
    for _ in range(warmup): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def _update_times(df, indicators, n_bars: int) -> list[float]:
    "Seconds of each `update` on `n_bars` bars, the state warmed on the bars before them"
    k = warmup_bars(indicators) + 1
    st = IncrementalFeatures(indicators).warm(df.iloc[-(k + n_bars):-n_bars])
    out = []
    for bar in df[list(OHLCV_COLS)].to_numpy(dtype='float64')[-n_bars:]:
        t = time.perf_counter(); st.update(*bar); out.append(time.perf_counter() - t)
    return out


def bench_incremental(quick: bool, Row=None, timed=None) -> list:
    "Features of a streamed bar: incremental update vs make_features over the held bars (warm-up + 1), default set and every causal kind"
    Row, timed = Row or _Row, timed or _timed
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


def bench_stream(quick: bool, Row=None, timed=None, train=None) -> list:
    "The whole streamed bar at the design sizes against the previous stream and from-scratch; 500 symbols per tick, batched or not"
    from trading_nb.inference import StreamState, StreamStates, _forward, _split_bar, _step, _ticks
    Row, timed = Row or _Row, timed or _timed
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        df = load_sample('sp500')
        im = _design_model(df, train)
        H, end = im.history_bars, len(df)
        n, n_prev, n_scratch = (60, 10, 5) if quick else (400, 40, 20)
        load0 = _load()
        # one series: the whole bar, its parts, and the two older ways, on the same last n bars of the S&P 500
        st = StreamState(im, history=df.iloc[end - n - H:end - n])
        part = StreamState(im, history=df.iloc[end - n - H:end - n])          # the same bars, without the forward pass
        t_bar, t_part, t_fwd, t_prev, t_scratch = [], [], [], [], []
        for i in range(end - n, end):
            bar = (df.index[i], df.iloc[i])
            t = time.perf_counter(); a = st.update(bar); t_bar.append(time.perf_counter() - t)
            if a['status'] != 'ok': raise RuntimeError(f"the stream did not predict: {a}")
            t = time.perf_counter(); _, ts, row = _split_bar(bar); _step(part, ts, row); t_part.append(time.perf_counter() - t)
            w = torch.from_numpy(st.window.copy())[None]
            t = time.perf_counter(); _forward(im, w, w[:, -1, st.n_price:]); t_fwd.append(time.perf_counter() - t)
            if i >= end - n_prev:
                t = time.perf_counter(); _previous_stream(im, df.iloc[i - im.warmup:i + 1], st.window); t_prev.append(time.perf_counter() - t)
            if i >= end - n_scratch:
                t = time.perf_counter(); _from_scratch(im, df.iloc[:i + 1]); t_scratch.append(time.perf_counter() - t)
        ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1e3, q))
        size = f"lookback {im.lookback}, default model ({sum(p.numel() for p in im.model.parameters()):,} parameters), 1 torch thread"
        rows = [Row('stream', 'a streamed bar without its forward pass (parse, checks, incremental features, normalization, window), p50',
                    ms(t_part, 50), 'ms', 'one forward pass (batch 1), p50', ms(t_fwd, 50), f"{n} / {n}",
                    f"{size}; {load0}", higher_is_better=False)]
        for q in (50, 99):
            rows.append(Row('stream', f'whole streamed bar (StreamState.update), p{q}', ms(t_bar, q), 'ms',
                            f'previous stream: pandas-ta over the {im.warmup + 1} held bars + forward, p{q}', ms(t_prev, q),
                            f"{n} / {n_prev}", f"{size}; {load0}" if q == 50 else f"p99 of n={n}; the baseline's of n={n_prev} sits near its worst",
                            higher_is_better=False))
        for q in (50, 99):
            rows.append(Row('stream', f'whole streamed bar (StreamState.update), p{q}', ms(t_bar, q), 'ms',
                            f'recompute from scratch: make_features over ~{end:,} bars + forward, p{q}', ms(t_scratch, q),
                            f"{n} / {n_scratch}", f"same run; {_load()} after the single-series rows", higher_is_better=False))
        # many symbols: every other tick batched, the ticks between one bar (one forward pass) at a time, on the same states
        n_sym, n_ticks = 500, (4 if quick else 8)
        uni = make_synthetic_panel(n_sym, H - 1 + n_ticks, seed=1)
        days = uni.index.get_level_values('date')
        first = days.unique()[H - 1]
        t = time.perf_counter(); ss = StreamStates(im, history=uni[days < first]); t_start = time.perf_counter() - t
        load1 = _load()
        t_batched, t_single = [], []
        for k, tick in enumerate(_ticks(uni[days >= first])):
            t = time.perf_counter()
            out = ss.update(tick) if k % 2 == 0 else [ss.update(bar)[0] for bar in tick]
            (t_batched if k % 2 == 0 else t_single).append(time.perf_counter() - t)
            if not all(a['status'] == 'ok' for a in out): raise RuntimeError("a symbol did not predict")
        seq = torch.from_numpy(np.stack([s.window for s in ss.states.values()]))
        ind = seq[:, -1, st.n_price:]
        f_batched, _ = timed(lambda: _forward(im, seq, ind), 2 if quick else 4, warmup=1)
        f_single, _ = timed(lambda: [_forward(im, seq[j:j + 1], ind[j:j + 1]) for j in range(n_sym)], 1 if quick else 2, warmup=0)
        b, s1 = statistics.median(t_batched), statistics.median(t_single)
        note = f"{n_sym} synthetic symbols, each started from {H - 1} bars ({t_start:.0f} s); {size}; {load1}"
        rows += [Row('stream', f'{n_sym} symbols per tick, one batched forward pass (StreamStates.update): s per tick', b, 's',
                     'one forward pass per symbol, s per tick', s1, f"{len(t_batched)} / {len(t_single)}", note, higher_is_better=False),
                 Row('stream', f'{n_sym} symbols per tick, batched: ms per symbol', b * 1e3 / n_sym, 'ms',
                     'one forward pass per symbol, ms per symbol', s1 * 1e3 / n_sym, f"{len(t_batched)} / {len(t_single)}",
                     "features included (about 0.05 ms of each symbol's share)", higher_is_better=False),
                 Row('stream', f'{n_sym} symbols: the forward pass alone, one batch of {n_sym} windows', f_batched, 's',
                     f'{n_sym} forward passes of one window', f_single, f"{2 if quick else 4} / {1 if quick else 2}",
                     f"{_load()} at the end", higher_is_better=False)]
        return rows
    finally:
        torch.set_num_threads(threads)


if __name__ == '__main__':
    for r in bench_incremental('--quick' in sys.argv) + bench_stream('--quick' in sys.argv):
        ratio = r.baseline_figure / r.figure if r.figure and r.baseline_figure else float('nan')
        print(f"{r.row}: {r.figure:.4g} {r.unit} vs {r.baseline}: {r.baseline_figure:.4g} {r.unit} ({ratio:.1f}x)  [{r.n}; {r.note}]")
