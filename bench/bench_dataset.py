"""1. dataset: `batches` (one gather per batch) against the design document's per-item `__getitem__`."""
from __future__ import annotations
import itertools
import torch
from common import BATCH, LOOKBACK, Row, log, timed
from design_doc_dataset import DesignDocDataset   # the design document's per-item dataset; the baseline of row 1
from trading_nb.dataset import batches


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

