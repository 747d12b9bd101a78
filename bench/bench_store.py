"""Feature-store rows of `make bench` (issue 19): bytes on disk, feature-build rows/s (local 1 and 2 processes, Ray), peak memory of
the build and of reading windows for a fixed number of steps, and windows/s from the store against the in-memory path.

Each measurement runs in its own process (this file's `job`), so its peak RSS (VmHWM) is its own. `rows(quick, large)` returns the rows;
`python bench/bench_store.py [--quick] [--large]` prints them. The synthetic minute bars are written by `write_synthetic_minutes`
(one symbol at a time) into a temporary folder. Sizes: --quick 200k rows; default 1M; --large adds 10M and 100M (long: the 100M
build takes about an hour per process on a 2-core machine).
"""
from __future__ import annotations
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
LOOKBACK, BATCH = 30, 64


def _mem() -> dict:
    "Peak and current resident memory of this process (MB), from /proc: VmHWM, VmRSS, RssAnon (private), RssFile (mapped files)"
    out = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        k, _, v = line.partition(':')
        if k in ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile'): out[k] = int(v.split()[0]) / 1024
    return out


def job(argv=None):
    "One measurement in a fresh process; writes its result as JSON"
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=['build', 'read_store', 'read_memory'])
    p.add_argument('--src'); p.add_argument('--store'); p.add_argument('--out', required=True)
    p.add_argument('--engine', default='local'); p.add_argument('--n-jobs', type=int, default=1); p.add_argument('--steps', type=int, default=200)
    a = p.parse_args(argv)
    import warnings
    warnings.simplefilter('ignore')
    import torch
    torch.set_num_threads(1)
    from trading_nb.dataset import batches
    res = {}
    if a.what == 'build':
        from trading_nb.store import build_store
        if a.engine == 'ray':
            import ray
            ray.init(num_cpus=a.n_jobs, include_dashboard=False, log_to_driver=False)
        t = time.perf_counter()
        st = build_store(a.src, a.store, engine=a.engine, n_jobs=a.n_jobs, n_tasks=4 * a.n_jobs if a.engine == 'ray' else None)
        res.update(seconds=time.perf_counter() - t, rows=st.n_rows, symbols=len(st.index),
                   bytes=sum(f.stat().st_size for f in Path(a.store).iterdir()), features_bytes=(Path(a.store) / 'features.bin').stat().st_size)
        if a.engine == 'ray': ray.shutdown()
    else:
        t = time.perf_counter()
        if a.what == 'read_store':
            from trading_nb.store import store_split
            train, _, _ = store_split(a.store, lookback=LOOKBACK)
        else:
            from trading_nb.data import load_panel
            from trading_nb.dataset import chronological_split
            train, _, _ = chronological_split(load_panel(a.src), lookback=LOOKBACK)
        res['setup_seconds'] = time.perf_counter() - t
        it = iter(batches(train, BATCH, shuffle=True, seed=0, sampler='blocks'))
        for _ in range(10): next(it)                        # warm: the pages of these batches, the first allocations
        t = time.perf_counter()
        for _ in range(a.steps): next(it)
        res.update(windows_per_s=a.steps * BATCH / (time.perf_counter() - t), windows=len(train))
    res.update(_mem())
    res['children_max_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    Path(a.out).write_text(json.dumps(res))


def _run(args: list, timeout: float = 3600) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'r.json'
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), 'job', *args, '--out', str(out)], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        if r.returncode: return dict(error=(r.stderr or r.stdout).strip().splitlines()[-1][:200])
        return json.loads(out.read_text())


def rows(quick: bool, large: bool) -> list:
    "The store's rows of the results table"
    from common import Row, log
    from trading_nb.store import write_synthetic_minutes
    sizes = [(10, 20_000)] if quick else [(20, 50_000)]                 # (symbols, bars per symbol)
    if large: sizes += [(100, 100_000), (500, 200_000)]                 # 10M and 100M rows
    load = lambda: ' '.join(f'{x:.2f}' for x in os.getloadavg())
    out, tmp = [], Path(tempfile.mkdtemp(prefix='bench_store_'))
    try:
        for i, (n_sym, n_bars) in enumerate(sizes):
            n = n_sym * n_bars
            tag = f"{n / 1e6:g}M rows ({n_sym} symbols x {n_bars} minute bars)"
            log(f"store: {tag}")
            src = write_synthetic_minutes(tmp / f'bars{i}', n_sym, n_bars, seed=i)
            b1 = _run(['build', '--src', str(src), '--store', str(tmp / f'store{i}'), '--n-jobs', '1'])
            if 'error' in b1:
                out.append(Row('store', f'build_store, {tag}', None, '', '-', None, '-', b1['error'])); continue
            rate1 = b1['rows'] / b1['seconds']
            out.append(Row('store', f'build_store, 1 process, rows/s, {tag}', rate1, 'rows/s', '-', None, '1',
                           f"{b1['bytes'] / b1['rows']:.0f} bytes/row on disk ({b1['features_bytes'] / b1['rows']:.0f} of them float32 features), "
                           f"{b1['bytes'] / 1e9:.2f} GB in all; peak RSS {b1['VmHWM']:.0f} MB; load {load()}"))
            out.append(Row('store', f'build_store peak RSS, 1 process, {tag}', b1['VmHWM'], 'MB', '-', None, '1',
                           'VmHWM of the building process (one symbol at a time)', higher_is_better=False))
            if i == 0:
                for engine, label in (('local', 'local, 2 processes (joblib loky)'), ('ray', 'Ray, local, 2 CPUs')):
                    b = _run(['build', '--src', str(src), '--store', str(tmp / f'store{i}_{engine}'), '--engine', engine, '--n-jobs', '2'])
                    out.append(Row('store', f'build_store, {label}, rows/s, {tag}', b['rows'] / b['seconds'] if 'seconds' in b else None, 'rows/s',
                                   '1 process', rate1, '1', b.get('error', f"main process peak RSS {b.get('VmHWM', 0):.0f} MB; load {load()}")))
                    shutil.rmtree(tmp / f'store{i}_{engine}', ignore_errors=True)
            steps = 100 if quick else 300
            rs = _run(['read_store', '--store', str(tmp / f'store{i}'), '--steps', str(steps)])
            out.append(Row('store', f'store_split + {steps} batches of {BATCH} from the store, peak RSS, {tag}', rs.get('VmHWM'), 'MB', '-', None, '1',
                           rs.get('error', f"private (RssAnon) {rs.get('RssAnon', 0):.0f} MB, mapped file pages (RssFile) {rs.get('RssFile', 0):.0f} MB at the end; "
                                           f"setup {rs.get('setup_seconds', 0):.1f} s; {rs.get('windows', 0)} training windows"), higher_is_better=False))
            if i == 0:   # the in-memory path at a size both fit
                rm = _run(['read_memory', '--src', str(src), '--steps', str(steps)])
                out.append(Row('store', f'windows/s from the store (warm page cache), {tag}', rs.get('windows_per_s'), 'windows/s',
                               'in memory (chronological_split + batches, same sampler)', rm.get('windows_per_s'), f'{steps} batches',
                               f"in-memory peak RSS {rm.get('VmHWM', 0):.0f} MB, setup {rm.get('setup_seconds', 0):.1f} s; load {load()}"))
                out.append(Row('store', f'in-memory path peak RSS, same steps, {tag}', rm.get('VmHWM'), 'MB', '-', None, '1',
                               rm.get('error', 'load_panel + chronological_split + batches'), higher_is_better=False))
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(tmp / f'store{i}', ignore_errors=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    return out


if __name__ == '__main__':
    if sys.argv[1:2] == ['job']: job(sys.argv[2:]); sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true'); p.add_argument('--large', action='store_true')
    a = p.parse_args()
    for r in rows(a.quick, a.large):
        print(f"{r.row}: {r.figure if r.figure is None else f'{r.figure:,.1f}'} {r.unit}"
              f"{'' if r.baseline_figure is None else f'  (vs {r.baseline}: {r.baseline_figure:,.1f})'}  | {r.note}")
