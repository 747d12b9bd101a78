"""The output of bench/run.py: results.json, results.md (table, notes, FLOPs, findings) and the findings drawn from the rows."""
from __future__ import annotations
import json
from dataclasses import asdict
from pathlib import Path
from common import BATCH, Row, cpu_peak


def _fmt(v) -> str:
    if v is None: return '-'
    if isinstance(v, float):
        if v != v: return 'nan'
        a = abs(v)
        return f"{v:,.0f}" if a >= 1000 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.1 else f"{v:.3g}"
    return str(v)


def _ratio(r: Row) -> str:
    if r.ratio is None: return '-'
    word = ''
    if r.unit in ('s', 'ms'): word = f" ({1 / r.ratio:.1f}x faster)" if r.ratio < 1 else f" ({r.ratio:.1f}x slower)"
    elif r.unit == 'GFLOP/s': word = f" ({r.ratio:.1%} of peak)"
    elif r.ratio > 0: word = f" ({r.ratio:.1f}x)" if r.ratio >= 1 else f" ({1 / r.ratio:.1f}x slower)"
    return f"{r.ratio:.3g}{word}"


def write(rows: list[Row], mach: dict, extra: dict, out: Path, elapsed: float):
    out.mkdir(parents=True, exist_ok=True)
    data = dict(machine=mach, elapsed_s=elapsed, rows=[{**asdict(r), 'ratio': r.ratio} for r in rows], extra=extra)
    (out / 'results.json').write_text(json.dumps(data, indent=1, default=str) + '\n')
    m = mach
    lines = [
        '# trading_nb benchmarks', '',
        f"Written by `make bench` (`bench/run.py`) in {elapsed:.0f} s. Each figure is beside a baseline measured in the same run; "
        "times are medians of n repeats after warm-up calls (n: figure / baseline). ratio = figure / baseline figure "
        "(for times, below 1 is faster; for GFLOP/s, the share of the peak).", '',
        '## Machine', '',
        f"- CPU: {m['cpu']}, {m['cores']} cores; torch CPU capability {m['torch_cpu_capability']}",
        f"- torch {m['torch']}, Python {m['python']}, {m['threads']} torch threads by default",
        f"- device: {m['device']}",
        f"- load average at start: {m['loadavg_at_start']} (other processes on the cores slow every figure, most of all 2-thread runs)",
        f"- date: {m['date']}", f"- peak assumed: {cpu_peak(m['cores'])['assumption']}", '',
        '## Results', '',
        '| # | section | row | figure | unit | baseline | baseline figure | ratio | n |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for i, r in enumerate(rows, 1):
        lines.append(f"| {i} | {r.section} | {r.row} | {_fmt(r.figure)} | {r.unit} | {r.baseline} | {_fmt(r.baseline_figure)} | {_ratio(r)} | {r.n} |")
    lines += ['', '## Notes per row', '']
    for i, r in enumerate(rows, 1):
        if r.note: lines.append(f"{i}. {r.note}")
    fl = extra.get('training', {}).get('flops')
    if fl:
        lines += ['', '## FLOPs of one training sample', '',
                  f"`torch.utils.flop_counter.FlopCounterMode` on a forward + backward pass counted {fl['counted'] / 1e6:.1f} MFLOP per sample "
                  f"({', '.join(f'{k} {v / BATCH / 1e6:.1f}' for k, v in fl['ops'].items())}). "
                  + ("It did not count the LSTM (no LSTM op in its table), so the LSTM's "
                     f"{fl['lstm_forward'] / 1e6:.1f} MFLOP forward (2 x 4H x (in + H) per layer and step) x 3 (forward + backward) = "
                     f"{fl['lstm_added'] / 1e6:.1f} MFLOP is added analytically" if not fl['lstm_counted'] else "It counted the LSTM.")
                  + f": {fl['total'] / 1e6:.1f} MFLOP per sample in all."]
    if extra.get('findings'):
        lines += ['', '## Where the time goes', ''] + [f"- {f}" for f in extra['findings']]
    (out / 'results.md').write_text('\n'.join(lines) + '\n')



def findings(rows: list[Row], extra: dict) -> list[str]:
    "Plain statements derived from this run's figures"
    get = lambda sec, start: next((r for r in rows if r.section == sec and r.row.startswith(start)), None)
    out = []
    tr = extra.get('training', {})
    rates = tr.get('rates', {})
    n_train = extra.get('n_train')
    if rates and n_train:
        best = max(rates, key=rates.get)
        out.append(f"Training dominates: one epoch of {n_train} windows takes {n_train / rates[best]:.0f} s at the best CPU setting "
                   f"({best}: {rates[best]:.0f} samples/s) and {n_train / min(rates.values()):.0f} s at the worst, against "
                   f"{_fmt(get('features', 'make_features warm').figure)} ms for all features and "
                   f"{n_train / get('dataset', 'TradingDataset via `batches` (one gather').figure * 1e3:.1f} ms to gather an epoch's batches.")
        fl = tr.get('flops')
        if fl: out.append(f"The LSTM is {fl['lstm_added'] / fl['total']:.0%} of a training sample's FLOPs; the rest is the attention "
                          "projections, the conv and the heads.")
        f1, f2 = rates.get('fp32, 1 thread(s)'), rates.get('fp32, 2 thread(s)')
        if f1 and f2: out.append(f"Threads: fp32 training at 2 threads runs at {f2 / f1:.2f}x the 1-thread rate on this machine "
                                 "(with a load average near the core count, 2 OpenMP threads wait on each other).")
        b1 = rates.get('bf16 autocast, 1 thread(s)')
        if f1 and b1: out.append(f"bf16 autocast trains at {b1 / f1:.2f}x the fp32 rate (1 thread).")
    e2e, info = get('end to end', '`trading-nb train --data'), extra.get('e2e', {}).get('default', {})
    if e2e and e2e.figure:
        bound = 'more than ' if info.get('status', '').startswith('stopped') else ''
        msg = f"End to end, `trading-nb train` with defaults took {bound}{e2e.figure:.0f} s"
        if 'train_seconds' in info:
            msg += (f", of which {info['epochs']} training epochs took {info['train_seconds']:.0f} s ({info['train_seconds'] / e2e.figure:.0%}); "
                    f"the rest (start-up, features, validation, baselines, bootstrap, export, report) {e2e.figure - info['train_seconds']:.0f} s")
        out.append(msg + '.')
        one = extra['e2e'].get('one_thread', {})
        if one.get('wall_s'): out.append(f"The same command with OMP_NUM_THREADS=1 took {one['wall_s']:.0f} s ({one['status']}).")
    b50, b99 = get('stream', 'whole streamed bar (StreamState.update), traced, p50'), get('stream', 'whole streamed bar (StreamState.update), traced, p99')
    f50, scratch = get('stream', 'forward pass, batch 1: traced'), get('stream', 'whole streamed bar, traced, p50')
    part, feat = get('stream', 'a streamed bar without its forward pass'), get('stream', 'features of a streamed bar, default set')
    if b50 and b99 and f50 and scratch:
        out.append(f"Streaming (design sizes, 1 thread): a whole bar costs {b50.figure:.2f} ms p50 / {b99.figure:.2f} ms p99 through the traced "
                   f"graph ({b50.baseline_figure:.2f} / {b99.baseline_figure:.2f} ms eager), {scratch.baseline_figure / scratch.figure:.0f}x less "
                   f"than recomputing from scratch ({scratch.baseline_figure:.0f} ms p50). The forward pass is {f50.figure:.2f} ms of it "
                   f"({f50.baseline_figure:.2f} ms eager)" + (f", the features {feat.figure:.0f} us" if feat else '')
                   + (f", and all the rest outside the model {part.figure:.2f} ms" if part else '')
                   + f". The p99 <= 5 ms goal is {'met' if b99.figure <= 5 else 'not met'} in this run; p99 moves with the load average.")
    cold = get('features', 'make_features, first call in a fresh process, EMPTY')
    cached = get('features', 'make_features, first call in a fresh process, numba cache filled')
    if cold and cached: out.append(f"Start-up: the first feature call compiles numba kernels for {cold.figure:.1f} s with an empty cache "
                                   f"and takes {cached.figure:.2f} s once the cache is filled.")
    return out
