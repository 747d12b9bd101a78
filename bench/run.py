"""Benchmarks of the trading_nb pipeline, each figure beside a baseline measured in the same run.

Run `make bench` (or `.venv/bin/python bench/run.py`); it writes `bench/results.md` and `bench/results.json`.
Every timing is the median of `n` repeats taken after warm-up calls; `n` is written beside each row.
This is a measurement script, not a test: nothing here asserts a time.

This file is the runner: it calls the stages in order and writes the results. Each stage's benchmark is a file of its own
(bench_dataset, bench_features, bench_training, bench_attention, bench_gpu, bench_inference, bench_panel, bench_stream,
bench_serve, bench_ddp, bench_zoo, bench_e2e); what they share (Row, timed, log, the machine) is in common.py, the output and findings in results.py.
A new stage: a bench_<name>.py returning a list of `Row`s, called below in the order its rows should appear.
bench_store.py (the feature store, `rows(quick, large)`) is called when the file is there; `--large` is passed on to it.
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import LOOKBACK, log, machine                # noqa: E402
from results import findings, write                       # noqa: E402
import bench_attention, bench_dataset, bench_ddp, bench_e2e, bench_features, bench_gpu, bench_inference, bench_panel  # noqa: E402
import bench_serve, bench_stream, bench_training, bench_zoo  # noqa: E402

from trading_nb.data import load_sample                   # noqa: E402
from trading_nb.dataset import chronological_split        # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=str(HERE), help='folder for results.md and results.json (default: bench/)')
    p.add_argument('--quick', action='store_true', help='fewer repeats (a smoke run; not for reporting)')
    p.add_argument('--skip-e2e', action='store_true', help='skip the end-to-end `trading-nb train` row')
    p.add_argument('--budget', type=float, default=540, help='seconds the whole run may take; the end-to-end row gets what is left')
    p.add_argument('--large', action='store_true', help='larger inputs for the stages that take them (the feature store, bench_store.py)')
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    mach = machine()
    log(f"{mach['cpu']}, {mach['cores']} cores, torch {mach['torch']}, {mach['threads']} threads, {mach['device']}, load {mach['loadavg_at_start']}")
    df = load_sample('sp500')
    train, _, _ = chronological_split(df, lookback=LOOKBACK)
    rows = bench_dataset.bench_dataset(df, train, args.quick)
    rows += bench_features.bench_features(df, args.quick)
    tr_rows, tr_extra = bench_training.bench_training(train, args.quick)
    rows += tr_rows
    rows += bench_attention.bench_attention(train, args.quick)
    rows += bench_gpu.bench_gpu(train, args.quick)
    rows += bench_inference.bench_inference(df, train, args.quick)
    rows += bench_panel.bench_panel(args.quick)
    # streaming: incremental features, whole streamed bar, many symbols per tick
    rows += bench_stream.bench_incremental(args.quick) + bench_stream.bench_stream(args.quick, train=train)
    rows += bench_serve.bench_serve(args.quick, train=train)   # the live service: 1, 10, 50 WebSocket clients on 127.0.0.1; memory over 1e5 bars
    rows += bench_zoo.bench_zoo(train, args.quick, df)  # every network kind: training samples/s and streamed-bar latency vs the hybrid
    rows += bench_ddp.bench_ddp(args.quick)           # torchrun: 1 vs 2 CPU processes; 1 GPU vs all GPUs where CUDA is
    if (HERE / 'bench_store.py').exists():            # the feature store's rows, once its stage file is in the tree
        import bench_store
        rows += bench_store.rows(args.quick, args.large)
    extra = dict(training=tr_extra, n_train=len(train))
    if args.skip_e2e:
        rows.append(bench_e2e.skipped('skipped with --skip-e2e'))
    else:
        left = max(60.0, args.budget - (time.perf_counter() - t_start))
        e_rows, e_extra = bench_e2e.bench_e2e(left)
        rows += e_rows; extra['e2e'] = e_extra
    extra['findings'] = findings(rows, extra)
    write(rows, mach, extra, Path(args.out), time.perf_counter() - t_start)
    log(f"wrote {Path(args.out) / 'results.md'} and results.json in {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == '__main__':
    sys.exit(main())
