"""5. end to end: wall time of `trading-nb train --data sp500` with defaults, with OMP_NUM_THREADS=1 and the start-up floor."""
from __future__ import annotations
import json, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd
import torch
from common import Row, log


def _cli() -> str | None:
    exe = Path(sys.executable).parent / 'trading-nb'
    return str(exe) if exe.exists() else shutil.which('trading-nb')


def _train_run(exe: str, timeout: float, env: dict | None = None) -> dict:
    "Wall time of `trading-nb train --data sp500 --out TMP` (defaults) and what its history says about the epochs"
    with tempfile.TemporaryDirectory(prefix='bench-e2e-') as d:
        t0 = time.perf_counter()
        try:
            r = subprocess.run([exe, 'train', '--data', 'sp500', '--out', d], capture_output=True, text=True, timeout=timeout,
                               env={**os.environ, **(env or {})})
            wall, status = time.perf_counter() - t0, ('ok' if r.returncode == 0 else f'exit code {r.returncode}: {r.stderr.strip()[-300:]}')
            tail = (r.stdout + r.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            wall, status, tail = time.perf_counter() - t0, f'stopped at the {timeout:.0f} s limit: the figure is a lower bound', ''
        info = dict(wall_s=wall, status=status, output_tail=tail, files=sorted(p.name for p in Path(d).rglob('*') if p.is_file()))
        try:
            hist = pd.read_csv(Path(d) / 'history.csv')
            info.update(epochs=len(hist), epoch_seconds=hist['seconds'].tolist(), train_seconds=float(hist['seconds'].sum()),
                        samples_per_s=float(hist['samples_per_s'].median()))
            info['training'] = json.loads((Path(d) / 'metrics.json').read_text()).get('training', {})
        except (OSError, KeyError, ValueError): pass
    return info


def _describe(info: dict) -> str:
    out = info['status']
    if 'train_seconds' in info:
        out += (f"; {info['epochs']} epochs ({info['training'].get('amp', '?')}, {info['training'].get('device', '?')}) took "
                f"{info['train_seconds']:.0f} s of it ({info['train_seconds'] / info['wall_s']:.0%}), median {info['samples_per_s']:.0f} samples/s")
    return out


NAME = '`trading-nb train --data sp500 --out DIR` (defaults), wall time'


def skipped(note: str) -> Row:
    "The end-to-end row when it is not run (`--skip-e2e`, or no `trading-nb train` command)"
    return Row('end to end', NAME, None, 's', 'skipped', None, '-', note, higher_is_better=False)


def bench_e2e(budget: float) -> tuple[list[Row], dict]:
    log("5. end to end")
    exe = _cli()
    has_train = exe is not None and subprocess.run([exe, 'train', '--help'], capture_output=True).returncode == 0
    if not has_train:
        return [skipped('skipped: the `trading-nb train` command does not exist yet in this checkout')], {}
    t0 = time.perf_counter()
    subprocess.run([exe, 'summary', '--data', 'sp500'], capture_output=True, text=True)
    t_floor = time.perf_counter() - t0
    log("   with OMP_NUM_THREADS=1")
    one = _train_run(exe, max(60.0, min(240.0, budget / 2)), dict(OMP_NUM_THREADS='1'))
    left = max(60.0, budget - (time.perf_counter() - t0))
    log(f"   with the default threads (at most {left:.0f} s)")
    dflt = _train_run(exe, left)
    rows = [Row('end to end', NAME, dflt['wall_s'], 's', 'the same with OMP_NUM_THREADS=1', one['wall_s'], '1 / 1',
                f"default threads ({torch.get_num_threads()}): {_describe(dflt)}; with 1 thread: {_describe(one)}", higher_is_better=False),
            Row('end to end', '`trading-nb train` (defaults) with OMP_NUM_THREADS=1, wall time', one['wall_s'], 's',
                '`trading-nb summary --data sp500` (start-up floor)', t_floor, '1 / 1',
                "the floor is process start, imports, load + validate", higher_is_better=False)]
    return rows, dict(default=dflt, one_thread=one, summary_s=t_floor)

