"""Feature-store rows of `make bench` (issue 19): rows, symbols and bytes on disk; feature-build rows/s (local 1 and 2 processes, Ray);
peak memory of the build and of training a small model for a fixed number of steps, from the store and in memory; windows/s read
from the store with a warm and a cold page cache against the in-memory path.

Each measurement runs in its own process (this file's `job`), so its peak memory is its own. Memory is read from /proc/self/status:
VmHWM (peak resident set), and RssAnon (private memory) apart from RssFile (pages of memory-mapped files: page cache, reclaimable and
shared by every process that maps the same store), each sampled every 20 ms for its peak.

`rows(quick, large)` returns the rows for bench/run.py. `python bench/bench_store.py [--quick] [--large] [--md FILE]` prints them and
writes a markdown table with the figures as JSON under it (`--large --md bench/results_store.md` writes the file that
nbs/03b_scaling.ipynb reads). Sizes: --quick 200k rows; default 1M and 3M rows (about 2 minutes); --large adds 10M and 100M (13 minutes
in all here, 7 of them the 100M build; the 100M input and store take ~33 GB of disk while it runs: a size that does not fit the free
disk is skipped and said). The in-memory path is measured up to 3M rows. The synthetic minute bars (`write_synthetic_minutes`, one
symbol at a time) and the stores live in a temporary folder, removed after.
"""
from __future__ import annotations
import argparse, datetime, itertools, json, os, platform, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
LOOKBACK, BATCH, TRAIN_STEPS, READ_STEPS = 30, 64, 200, 300
RAW = {}                           # row -> its figure and the raw results of its job (the JSON under the table)
MEMORY_MAX_ROWS = 3_000_000        # the in-memory path is measured up to here (~885 bytes per row of peak memory: it fits)
DISK_BYTES_PER_ROW = 400           # input Parquet (~50) + store (~140) + the build's parts beside it until the rename (~140), with room


# ---------------------------------------------------------------- memory and page cache
def _status() -> dict:
    "VmHWM, VmRSS, RssAnon, RssFile of this process (MB)"
    out = {}
    for line in Path('/proc/self/status').read_text().splitlines():
        k, _, v = line.partition(':')
        if k in ('VmHWM', 'VmRSS', 'RssAnon', 'RssFile'): out[k] = int(v.split()[0]) / 1024
    return out


def _mapped(prefix: str) -> float:
    "Resident MB of this process's memory maps of files under `prefix` (the store), from /proc/self/smaps"
    kb, inside = 0, False
    for line in Path('/proc/self/smaps').read_text().splitlines():
        head = line.split(maxsplit=5)
        if '-' in head[0] and not head[0].endswith(':'): inside = len(head) > 5 and head[5].startswith(prefix)
        elif inside and line.startswith('Rss:'): kb += int(head[1])
    return kb / 1024


class PeakMemory:
    "Peak RssAnon, RssFile and the store's mapped pages of this process, sampled in a thread (VmHWM is only the peak of the sum)"
    def __init__(self, store=None, every: float = 0.02):
        self.store = str(Path(store).resolve()) if store else None
        self.every, self.peak, self._stop = every, dict(RssAnon=0.0, RssFile=0.0, store=0.0), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True); self._t.start()

    def _sample(self, smaps: bool):
        s = _status()
        if smaps and self.store: s['store'] = _mapped(self.store)
        for k in self.peak: self.peak[k] = max(self.peak[k], s.get(k, 0.0))
        return s

    def _run(self):
        i = 0
        while not self._stop.is_set():
            self._sample(i % 25 == 0); i += 1               # smaps (~10 ms to read) every half second
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set(); self._t.join()
        s = self._sample(True)
        return dict(VmHWM=s['VmHWM'], peak_anon_mb=self.peak['RssAnon'], peak_file_mb=self.peak['RssFile'], peak_store_mb=self.peak['store'],
                    end_anon_mb=s['RssAnon'], end_file_mb=s['RssFile'], end_store_mb=s.get('store', 0.0))


def _read_bytes() -> int:
    "Bytes this process caused to be read from the block device (page-cache misses, readahead included)"
    for line in Path('/proc/self/io').read_text().splitlines():
        if line.startswith('read_bytes:'): return int(line.split()[1])
    return 0


def drop_pages(folder) -> dict:
    "Drop a store's files from the page cache (fsync, then POSIX_FADV_DONTNEED); the share of their bytes still resident after, by fincore"
    files = [f for f in Path(folder).iterdir() if f.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try: os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally: os.close(fd)
    return dict(resident=resident(files), size=sum(f.stat().st_size for f in files))


def resident(files) -> int | None:
    "Bytes of `files` in the page cache (util-linux fincore), None when it cannot be told"
    try:
        r = subprocess.run(['fincore', '--bytes', '--noheadings', '--raw', '-o', 'RES', *map(str, files)], capture_output=True, text=True, check=True)
        return sum(int(x) for x in r.stdout.split())
    except (OSError, subprocess.CalledProcessError, ValueError): return None


# ---------------------------------------------------------------- one measurement, in its own process
def _split(a):
    "The training part: from the store (`store_split`) or in memory (`load_panel` + `chronological_split`)"
    if a.path == 'store':
        from trading_nb.store import store_split
        return store_split(a.store, lookback=LOOKBACK)[0]
    from trading_nb.data import load_panel
    from trading_nb.dataset import chronological_split
    return chronological_split(load_panel(a.src), lookback=LOOKBACK)[0]


def job(argv=None):
    "One measurement in a fresh process; writes its result as JSON"
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=['build', 'train', 'read'])
    p.add_argument('--path', choices=['store', 'memory'], default='store')
    p.add_argument('--src'); p.add_argument('--store'); p.add_argument('--out', required=True)
    p.add_argument('--engine', default='local'); p.add_argument('--n-jobs', type=int, default=1)
    p.add_argument('--steps', type=int, default=TRAIN_STEPS); p.add_argument('--cold', action='store_true')
    a = p.parse_args(argv)
    import warnings
    warnings.simplefilter('ignore')
    import torch
    torch.set_num_threads(1)
    from trading_nb.dataset import batches
    mem, res = PeakMemory(a.store if a.path == 'store' else None), dict(load_at_start=os.getloadavg()[0])
    if a.what == 'build':
        from trading_nb.store import build_store
        if a.engine == 'ray':
            import ray
            ray.init(num_cpus=a.n_jobs, include_dashboard=False, log_to_driver=False)
        t = time.perf_counter()
        st = build_store(a.src, a.store, engine=a.engine, n_jobs=a.n_jobs, n_tasks=4 * a.n_jobs if a.engine == 'ray' else None)
        res.update(seconds=time.perf_counter() - t, rows=st.n_rows, symbols=len(st.index), n_features=len(st.feature_names),
                   bytes=sum(f.stat().st_size for f in Path(a.store).iterdir()),
                   file_bytes={f.name: f.stat().st_size for f in Path(a.store).iterdir()})
        if a.engine == 'ray': ray.shutdown()
        import resource
        res['children_max_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    elif a.what == 'train':   # a real training loop: `train_epoch` on a small model over `steps` batches of the block sampler
        from trading_nb.model import ModelConfig, TradingModel
        from trading_nb.train import set_seed, train_epoch
        t = time.perf_counter()
        train = _split(a)
        res['setup_seconds'] = time.perf_counter() - t
        set_seed(0)
        model = TradingModel(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=LOOKBACK,
                                         conv_channels=16, hidden_size=32, num_layers=1, n_heads=2, indicator_hidden=16, head_hidden=16))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = itertools.islice(iter(batches(train, BATCH, shuffle=True, seed=0, sampler='blocks')), a.steps)
        r = train_epoch(model, loader, opt, torch.device('cpu'))
        res.update(steps_per_s=a.steps / r['seconds'], windows_per_s=r['samples_per_s'], loss=r['loss'], windows=len(train),
                   n_params=sum(q.numel() for q in model.parameters()))
    else:                     # windows/s read: batches of the same sampler, no model
        t = time.perf_counter()
        train = _split(a)
        res['setup_seconds'] = time.perf_counter() - t
        it = iter(batches(train, BATCH, shuffle=True, seed=0, sampler='blocks'))
        if a.cold:                                          # after the setup's streaming passes (np.fromfile: unmapped pages, droppable)
            d = drop_pages(a.store)
            res.update(resident_after_drop=d['resident'], store_bytes=d['size'])
        else:
            for _ in range(10): next(it)                    # the first allocations
            if a.path == 'store':                           # warm: every page of the store in the cache before the clock starts
                for f in Path(a.store).iterdir():
                    with open(f, 'rb') as fh:
                        while fh.read(1 << 24): pass
        rb, t = _read_bytes(), time.perf_counter()
        for _ in range(a.steps): next(it)
        res.update(windows_per_s=a.steps * BATCH / (time.perf_counter() - t), disk_read_mb=(_read_bytes() - rb) / 2**20, windows=len(train))
    res.update(mem.stop())
    res['load_at_end'] = os.getloadavg()[0]
    Path(a.out).write_text(json.dumps(res))


def _run(args: list, timeout: float = 3600) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'r.json'
        r = subprocess.run([sys.executable, str(Path(__file__).resolve()), 'job', *args, '--out', str(out)], capture_output=True, text=True,
                           timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})
        if r.returncode or not out.exists(): return dict(error=((r.stderr or r.stdout).strip().splitlines() or ['no output'])[-1][:200])
        return json.loads(out.read_text())


# ---------------------------------------------------------------- the rows
def _mb(r: dict) -> str:
    "The memory note of a job: private and file-mapped peaks"
    if 'error' in r: return r['error']
    return (f"private (RssAnon) peak {r['peak_anon_mb']:.0f} MB; file-mapped (RssFile) peak {r['peak_file_mb']:.0f} MB, of which the store's pages "
            f"{r['peak_store_mb']:.0f} MB (page cache, shared) and the rest libraries (torch)")


def _load(r: dict) -> str:
    return f"load {r.get('load_at_start', float('nan')):.2f}->{r.get('load_at_end', float('nan')):.2f}"


def sizes(quick: bool, large: bool) -> list:
    "(symbols, minute bars per symbol) of each panel measured"
    if quick: return [(10, 20_000)]
    return [(20, 50_000), (30, 100_000)] + ([(100, 100_000), (500, 200_000)] if large else [])


def rows(quick: bool, large: bool, on_row=None) -> list:
    "The store's rows of the results table (`on_row(row)` is called as each is measured)"
    from common import Row, log
    from trading_nb.store import write_synthetic_minutes
    out, tmp = [], Path(tempfile.mkdtemp(prefix='bench_store_'))
    train_steps, read_steps = (50, 100) if quick else (TRAIN_STEPS, READ_STEPS)

    def add(*a, raw: dict | None = None, **k):
        out.append(Row('store', *a, **k))
        RAW[out[-1].row] = dict(figure=out[-1].figure, unit=out[-1].unit, baseline_figure=out[-1].baseline_figure,
                                **{k: v for k, v in (raw or {}).items() if k != 'file_bytes'})
        log(f"  {out[-1].row}: {out[-1].figure} {out[-1].unit} | {out[-1].note}")
        if on_row: on_row(out[-1])

    try:
        for i, (n_sym, n_bars) in enumerate(sizes(quick, large)):
            n = n_sym * n_bars
            tag = f"{n / 1e6:g}M rows"
            free = shutil.disk_usage(tmp).free
            if free < n * DISK_BYTES_PER_ROW:
                add(f'{tag}: skipped', None, '', '-', None, '-', f"needs ~{n * DISK_BYTES_PER_ROW / 1e9:.0f} GB of disk, {free / 1e9:.0f} GB free"); continue
            log(f"store: {tag} ({n_sym} symbols x {n_bars} minute bars)")
            t = time.perf_counter()
            src = write_synthetic_minutes(tmp / f'bars{i}', n_sym, n_bars, seed=i)
            src_bytes, src_s = sum(f.stat().st_size for f in src.iterdir()), time.perf_counter() - t
            store = tmp / f'store{i}'
            b1 = _run(['build', '--src', str(src), '--store', str(store), '--n-jobs', '1'])
            if 'error' in b1:
                add(f'{tag}: build_store', None, '', '-', None, '-', b1['error']); continue
            fb = b1['file_bytes']
            add(f'{tag}: rows, symbols, bytes on disk', b1['bytes'] / b1['rows'], 'bytes/row', '-', None, '1',
                f"{b1['rows']:,} feature rows of {n:,} bars, {b1['symbols']} symbols, {b1['n_features']} float32 features; "
                f"{b1['bytes'] / 1e9:.2f} GB in all: features {fb['features.bin'] / b1['rows']:.0f} B/row, dates {fb['dates.bin'] / b1['rows']:.0f}, "
                f"bars (OHLCV float64) {sum(v for k, v in fb.items() if k in ('open.bin', 'high.bin', 'low.bin', 'close.bin', 'volume.bin')) / b1['rows']:.0f}; "
                f"input Parquet {src_bytes / n:.0f} B/bar (written in {src_s:.0f} s)", higher_is_better=False,
                raw=dict(b1, bars=n, input_bytes=src_bytes, **{f'{k[:-4]}_bytes': v for k, v in fb.items() if k.endswith('.bin')}))
            rate1 = b1['rows'] / b1['seconds']
            add(f'{tag}: build_store, local, 1 process', rate1, 'rows/s', '-', None, '1', f"{b1['seconds']:.1f} s; {_load(b1)}", raw=b1)
            add(f'{tag}: build_store peak RSS, 1 process', b1['VmHWM'], 'MB', '-', None, '1', f"{_mb(b1)}; one symbol at a time", higher_is_better=False, raw=b1)
            if i == 0 or n == 10_000_000:   # the parallel builds: at the first size, and at 10M rows where the workers' start counts less
                for engine, label in (('local', 'local, 2 processes (joblib loky)'), ('ray', 'Ray on this machine, 2 CPUs')):
                    b = _run(['build', '--src', str(src), '--store', str(tmp / f'store{i}_{engine}'), '--engine', engine, '--n-jobs', '2'])
                    add(f'{tag}: build_store, {label}', b.get('rows', 0) / b['seconds'] if 'seconds' in b else None, 'rows/s', '1 process', rate1, '1',
                        b['error'] if 'error' in b else f"{b['seconds']:.1f} s{' (the start of Ray included)' if engine == 'ray' else ' (the start of the workers included)'}; driver peak RSS {b['VmHWM']:.0f} MB; {_load(b)}", raw=b)
                    shutil.rmtree(tmp / f'store{i}_{engine}', ignore_errors=True)
            ts = _run(['train', '--store', str(store), '--steps', str(train_steps)])
            add(f'{tag}: training peak RSS, from the store', ts.get('VmHWM'), 'MB', '-', None, '1',
                f"store_split + train_epoch, {train_steps} steps of {BATCH}, small model ({ts.get('n_params', 0):,} parameters), block sampler; "
                f"{_mb(ts)}; {ts.get('windows', 0):,} training windows; setup {ts.get('setup_seconds', 0):.1f} s, "
                f"{ts.get('windows_per_s', 0):,.0f} windows/s trained; {_load(ts)}" if 'error' not in ts else ts['error'], higher_is_better=False, raw=ts)
            if n <= MEMORY_MAX_ROWS:
                tm = _run(['train', '--path', 'memory', '--src', str(src), '--steps', str(train_steps)])
                add(f'{tag}: training peak RSS, in memory', tm.get('VmHWM'), 'MB', 'from the store', ts.get('VmHWM'), '1',
                    f"load_panel + chronological_split + the same training; {_mb(tm)}; setup {tm.get('setup_seconds', 0):.1f} s, "
                    f"{tm.get('windows_per_s', 0):,.0f} windows/s trained; {_load(tm)}" if 'error' not in tm else tm['error'], higher_is_better=False, raw=tm)
            if i == 0 or n >= 10_000_000:   # windows/s read: warm and cold at the first size (beside the in-memory path), cold at the large ones
                warm = _run(['read', '--store', str(store), '--steps', str(read_steps)]) if i == 0 else None
                cold = _run(['read', '--store', str(store), '--steps', str(read_steps), '--cold'])
                mem = _run(['read', '--path', 'memory', '--src', str(src), '--steps', str(read_steps)]) if i == 0 else None
                if warm is not None:
                    add(f'{tag}: windows/s read from the store, warm page cache', warm.get('windows_per_s'), 'windows/s',
                        'in memory, same sampler', mem.get('windows_per_s'), f'{read_steps} batches',
                        f"{warm.get('disk_read_mb', 0):.0f} MB read from disk; in-memory peak RSS {mem.get('VmHWM', 0):.0f} MB; {_load(warm)}"
                        if 'error' not in warm else warm['error'], raw=dict(warm, memory=mem))
                ok = 'error' not in cold
                res, size = cold.get('resident_after_drop'), cold.get('store_bytes', 1)
                made = ('could not be told (no fincore)' if res is None else f"{res / 2**20:.1f} MB of {size / 2**20:.0f} MB still cached after the drop")
                add(f'{tag}: windows/s read from the store, cold page cache', cold.get('windows_per_s'), 'windows/s',
                    'warm' if warm else '-', warm.get('windows_per_s') if warm else None, f'{read_steps} batches',
                    f"pages dropped with POSIX_FADV_DONTNEED: {made}; {cold['disk_read_mb']:.0f} MB then read from the disk "
                    f"(a virtual disk: the host may still cache it); {_load(cold)}" if ok else cold['error'], raw=cold)
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(store, ignore_errors=True)
    finally: shutil.rmtree(tmp, ignore_errors=True)
    return out


NOTES = """Synthetic random-walk minute bars (390 a session, weekdays), lookback 30, the default indicator set, `OMP_NUM_THREADS=1` and one torch
thread in every process. Each row is one fresh process. Memory: VmHWM is the peak resident set; *private* (RssAnon) is the process's own
memory and the store's *mapped pages* are page cache (reclaimable, shared by every process on the machine mapping the same store); the rest
of RssFile is the libraries (torch). Training: `train_epoch` on a small `TradingModel` for a fixed number of steps of 64 windows drawn by the
block sampler. Cold reads: the store's files dropped from the page cache with POSIX_FADV_DONTNEED after the setup; fincore says what stayed
cached and /proc/self/io what was then read from the disk. The machine is shared with other work: the load average (1 minute, at the start
and end of each measurement) is beside each figure; compare figures within one run only."""


def markdown(rs: list, header: str = '', raw: dict | None = None) -> str:
    "The rows as a markdown table"
    from results import _fmt
    lines = [header, '', NOTES, '', '| measurement | figure | unit | baseline | baseline figure | note |', '|---|---:|---|---|---:|---|']
    for r in rs:
        lines.append(f"| {r.row} | {_fmt(r.figure)} | {r.unit} | {r.baseline} | {_fmt(r.baseline_figure)} | {r.note.replace('|', '/')} |")
    if raw: lines += ['', 'The figures as data (read by nbs/03b_scaling.ipynb):', '', '```json', json.dumps(raw, indent=1, default=float), '```']
    return '\n'.join(lines) + '\n'


def machine_line() -> str:
    from common import machine
    m = machine()
    mem = int(Path('/proc/meminfo').read_text().split()[1]) / 2**20
    return (f"{m['cpu']}, {m['cores']} cores, {mem:.0f} GB memory, torch {m['torch']}, Python {platform.python_version()}, "
            f"1 torch thread and OMP_NUM_THREADS=1 per process; load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == '__main__':
    if sys.argv[1:2] == ['job']: job(sys.argv[2:]); sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true'); p.add_argument('--large', action='store_true')
    p.add_argument('--md', help='write the table here (rewritten after every row)')
    a = p.parse_args()
    start = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    head = f"Measured {start} by `bench/bench_store.py{' --quick' if a.quick else ''}{' --large' if a.large else ''}` on {machine_line()}."
    done = []
    def keep(r):
        done.append(r)
        if a.md: Path(a.md).write_text(markdown(done, head, RAW))
    rs = rows(a.quick, a.large, keep)
    print(markdown(rs, head, RAW))
