"""3. training on the CPU: train_epoch samples/s, fp32 and bf16 autocast at 1, 2 and the default threads; FLOPs per sample and GFLOP/s against the peak."""
from __future__ import annotations
import itertools, os
import torch
from torch import nn
from common import BATCH, LOOKBACK, Row, cpu_peak, log, timed
from trading_nb.dataset import batches
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import set_seed, train_epoch


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
