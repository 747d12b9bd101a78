"""What every benchmark stage shares: the design sizes, the `Row` of the results table, the timing rule, the log line and the machine.

Imported by bench/run.py and by each stage file (bench_*.py) with bench/ on sys.path (`python bench/run.py` puts it there).
"""
from __future__ import annotations
import datetime, os, platform, re, statistics, subprocess, time
from dataclasses import dataclass
from pathlib import Path
import torch

LOOKBACK, BATCH = 100, 64             # the design document's sizes


@dataclass
class Row:
    "One line of the results table"
    section: str
    row: str
    figure: float | None
    unit: str
    baseline: str
    baseline_figure: float | None
    n: str                   # repeats behind the medians (figure / baseline)
    note: str = ''
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        "figure / baseline figure"
        if self.figure is None or not self.baseline_figure: return None
        return self.figure / self.baseline_figure


# ---------------------------------------------------------------- timing helpers
def timed(fn, n: int, warmup: int = 1) -> tuple[float, list[float]]:
    "Median wall time of `fn()` over `n` calls after `warmup` untimed calls, and all the times"
    for _ in range(warmup): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- the machine
def _lscpu() -> dict:
    try: out = subprocess.run(['lscpu'], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError): return {}
    return {k.strip(): v.strip() for k, _, v in (l.partition(':') for l in out.splitlines())}


def cpu_peak(cores: int) -> dict:
    "Peak fp32 FLOP/s of `cores` cores: cores x GHz x FLOP/cycle of the widest FMA the flags show (2 FMA units assumed)"
    info = _lscpu()
    flags = set(info.get('Flags', '').split())
    mhz = None
    for key in ('CPU max MHz', 'CPU MHz'):
        try: mhz = float(info[key]); break
        except (KeyError, ValueError): pass
    if mhz is None:
        try: mhz = float(re.search(r'cpu MHz\s*:\s*([\d.]+)', Path('/proc/cpuinfo').read_text()).group(1))
        except (OSError, AttributeError): mhz = 2000.0
    if 'avx512f' in flags: simd, lanes = 'AVX-512 FMA', 16
    elif 'avx2' in flags and 'fma' in flags: simd, lanes = 'AVX2 FMA', 8
    elif 'avx' in flags: simd, lanes = 'AVX (no FMA)', 4
    else: simd, lanes = 'SSE', 2
    per_cycle = lanes * 2 * (2 if 'FMA' in simd else 1)      # lanes x (mul + add) x 2 FMA ports
    return dict(simd=simd, ghz=mhz / 1000, flop_per_cycle=per_cycle, cores=cores, gflops=cores * mhz / 1000 * per_cycle,
                amx_bf16='amx_bf16' in flags, avx512_bf16='avx512_bf16' in flags,
                assumption=f"{cores} core(s) x {mhz / 1000:.2f} GHz x {per_cycle} fp32 FLOP/cycle "
                           f"({simd}: {lanes} fp32 lanes x 2 (FMA) x 2 FMA units)")


def machine() -> dict:
    info = _lscpu()
    cuda = torch.cuda.is_available()
    try: load = Path('/proc/loadavg').read_text().split()[:3]
    except OSError: load = []
    return dict(cpu=info.get('Model name', platform.processor() or platform.machine()),
                cores=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability(),
                device=torch.cuda.get_device_name(0) if cuda else 'cpu (no CUDA here)',
                loadavg_at_start=' '.join(load), date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                platform=platform.platform())


