"""3b. GPU training: train_epoch samples/s, fp32 against AMP, eager against torch.compile (one skipped row without CUDA).

Also called by tools/gpu-check.
"""
from __future__ import annotations
import itertools, time
import torch
from torch import nn
from common import BATCH, LOOKBACK, Row, log, timed
from trading_nb.dataset import batches
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import amp_dtype_for, set_seed, train_epoch


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

