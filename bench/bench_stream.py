"""Streaming features: one `IncrementalFeatures.update` per bar against `make_features` over the bars a stream holds.

`bench_incremental(quick)` returns rows for bench/run.py's results table. Pass run.py's `Row` and `timed` to get its
own row objects and timing; without them it uses the minimal versions below (same fields, same median-of-n rule).
Run alone: `.venv/bin/python bench/bench_stream.py [--quick]` prints the rows. Nothing here asserts a time.
"""
from __future__ import annotations
import os, statistics, sys, time
from dataclasses import dataclass

import numpy as np

from trading_nb.data import OHLCV_COLS, load_sample
from trading_nb.features import make_features, warmup_bars
from trading_nb.incremental import CAUSAL_INDICATORS, IncrementalFeatures


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


def bench_stream(quick: bool, Row=None, timed=None, train=None) -> list:
    "The whole streamed bar and many symbols per tick (rows added with the streaming state)"
    return []


if __name__ == '__main__':
    for r in bench_incremental('--quick' in sys.argv):
        ratio = r.baseline_figure / r.figure if r.figure and r.baseline_figure else float('nan')
        print(f"{r.row}: {r.figure:.1f} {r.unit} vs {r.baseline}: {r.baseline_figure:.1f} {r.unit} ({ratio:.0f}x)  [{r.n}]")
