"""3a. model: the encoder's attention for the last step only against attention for every step (forward + backward)."""
from __future__ import annotations
import torch
from common import BATCH, LOOKBACK, Row, log, timed
from trading_nb.dataset import batches
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import set_seed


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

