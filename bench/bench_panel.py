"""Panels: the features of a synthetic panel serial, in parallel and read back from the cache; windows/s gathered from the panel."""
from __future__ import annotations
import tempfile
from common import BATCH, LOOKBACK, Row, log, timed
from trading_nb.dataset import batches, chronological_split


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

