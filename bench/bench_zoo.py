"""The model zoo: training samples/s and the single-bar streaming latency of every network kind at the default sizes, each against the hybrid measured in the same run.

`bench_zoo(train, quick)`: for each kind of `TORCH_KINDS` (hybrid, lstm, gru, alstm, transformer, tcn) built by `build_model` at the
default sizes (the design document's; lookback 100, the S&P 500 run's 12 channels and 5 indicators), untrained weights (speed does not
depend on them):
- training: `train_epoch` samples/s, fp32, batch 64, on shuffled windows of the S&P 500 training part, torch's default threads;
  the kinds are measured in turn, repeat by repeat (interleaved), so that a busy machine slows them alike;
- streaming: the whole streamed bar (`StreamState.update`: incremental features, the window, the forward pass through the traced
  graph) p50 and p99 on the same bars, 1 torch thread, the kinds again interleaved bar by bar.
Every row's baseline is the hybrid's figure from the same run (ratio > 1: faster than the hybrid for samples/s; for latency the
table's ratio is figure / baseline, lower is better). The tabular kinds are not timed here: they are not trained by steps and
LightGBM's forward pass is not torch. Run alone: `.venv/bin/python bench/bench_zoo.py [--quick]` prints the rows. Nothing asserts a time.
"""
from __future__ import annotations
import itertools, os, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BATCH, LOOKBACK, Row, log                       # noqa: E402
from trading_nb.dataset import batches                              # noqa: E402
from trading_nb.model import TORCH_KINDS, ModelConfig, build_model   # noqa: E402
from trading_nb.train import set_seed, train_epoch                  # noqa: E402


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _models(train) -> dict:
    "An untrained model of every network kind at the default sizes"
    out = {}
    for kind in TORCH_KINDS:
        set_seed(0)
        out[kind] = build_model(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators,
                                            output_dim=train.output_dim, lookback=train.lookback, kind=kind))
    return out


def _training_rates(models: dict, train, n_batches: int, repeats: int) -> dict:
    "Median training samples/s of each model: `train_epoch` on `n_batches` shuffled batches, kinds interleaved within each repeat"
    device, crit = torch.device('cpu'), nn.CrossEntropyLoss()
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    seed = itertools.count()
    def run(k, n):
        feed = itertools.islice(iter(batches(train, BATCH, shuffle=True, seed=next(seed))), n)
        t0 = time.perf_counter()
        train_epoch(models[k], feed, opts[k], device, crit, None, None, None, 1.0)
        return time.perf_counter() - t0
    for k in models: run(k, 2)                                  # warm-up
    times = {k: [] for k in models}
    for _ in range(repeats):
        for k in models: times[k].append(run(k, n_batches))
    return {k: n_batches * BATCH / statistics.median(v) for k, v in times.items()}


def _stream_times(models: dict, train, df, n_bars: int) -> dict:
    "Seconds of each streamed bar per kind: exported, reloaded (traced on the CPU), states warmed on the same history, bars interleaved"
    from trading_nb.inference import StreamState, export_model, setup_inference
    ims, states = {}, {}
    with tempfile.TemporaryDirectory(prefix='bench-zoo-') as d:
        for k, m in models.items(): ims[k] = setup_inference(export_model(m.eval(), Path(d) / k / 'model.pt', train, data=df), device='cpu')
    end = len(df)
    hist = df.iloc[end - n_bars - ims['hybrid'].history_bars:end - n_bars]
    for k, im in ims.items():
        states[k] = StreamState(im, history=hist)
        w = torch.from_numpy(states[k].window.copy())[None]
        with torch.inference_mode(): im._runner()(w, w[:, -1, states[k].n_price:])   # build the graph before timing
    times = {k: [] for k in ims}
    order = list(ims)
    for i in range(end - n_bars, end):
        bar = (df.index[i], df.iloc[i])
        for k in (order if i % 2 else order[::-1]):
            t0 = time.perf_counter(); a = states[k].update(bar); times[k].append(time.perf_counter() - t0)
            if a['status'] != 'ok': raise RuntimeError(f"{k}: the stream did not predict: {a}")
    errors = {k: im.jit_error for k, im in ims.items() if im.jit_error}
    if errors: log(f"   eager (tracing failed): {errors}")
    return times


def bench_zoo(train, quick: bool, df=None) -> list:
    "Training samples/s and streamed-bar latency of every network kind, against the hybrid in the same run"
    from trading_nb.data import load_sample
    log("zoo: training samples/s and streamed-bar latency per model kind")
    df = load_sample('sp500') if df is None else df
    models = _models(train)
    params = {k: m.num_parameters() for k, m in models.items()}
    n_batches, repeats, n_bars = (3, 1, 30) if quick else (8, 3, 200)
    load0 = _load()
    rates = _training_rates(models, train, n_batches, repeats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try: times = _stream_times(models, train, df, n_bars)
    finally: torch.set_num_threads(threads)
    load1 = _load()
    rows = []
    size = f"lookback {train.lookback}, batch {BATCH}, fp32, {threads} thread(s), default sizes"
    for k in TORCH_KINDS:
        rows.append(Row('zoo', f'training samples/s, {k} ({params[k]:,} parameters)', rates[k], 'samples/s',
                        'hybrid, same run', rates['hybrid'], f"{repeats} x {n_batches} batches each, interleaved",
                        f"{size}; {load0} at the start"))
    for q in (50, 99):
        base = float(np.percentile(np.asarray(times['hybrid']) * 1e3, q))
        for k in TORCH_KINDS:
            rows.append(Row('zoo', f'streamed bar p{q}, {k} (StreamState.update, traced)', float(np.percentile(np.asarray(times[k]) * 1e3, q)),
                            'ms', f'hybrid p{q}, same bars', base, f"{n_bars} bars each, interleaved",
                            f"batch 1, 1 torch thread, incremental features included; {load1} after", higher_is_better=False))
    return rows


if __name__ == '__main__':
    from trading_nb.data import load_sample
    from trading_nb.dataset import chronological_split
    quick = '--quick' in sys.argv
    df = load_sample('sp500')
    train, _, _ = chronological_split(df, lookback=LOOKBACK)
    print(f"{_load()} at the start; torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for r in bench_zoo(train, quick, df):
        print(f"{r.row}: {r.figure:.4g} {r.unit} vs {r.baseline}: {r.baseline_figure:.4g} {r.unit} (ratio {r.ratio:.2f})  [{r.n}; {r.note}]")
