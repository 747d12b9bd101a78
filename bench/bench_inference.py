"""4. inference: `predict` on a frame (batch 1024) against batch 1; the stream's rows are in bench_stream.py."""
from __future__ import annotations
import tempfile
from pathlib import Path
import torch
from common import LOOKBACK, Row, log, timed
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import set_seed


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
