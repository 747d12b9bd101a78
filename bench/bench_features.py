"""2. features: the first call in a fresh process (empty and filled numba cache) and warm calls, pandas-ta against TA-Lib."""
from __future__ import annotations
import json, os, statistics, subprocess, sys, tempfile
from common import Row, log, timed
from trading_nb.features import DEFAULT_INDICATORS, calculate_technical_features, make_features

TALIB_KINDS = ('rsi', 'macd', 'bbands', 'atr', 'stoch', 'adx')   # the default indicators TA-Lib also has (not volume_z)

_COLD = r"""
import json, time
t0 = time.perf_counter()
from trading_nb.data import load_sample
from trading_nb.features import make_features
t1 = time.perf_counter()
df = load_sample('sp500')
t2 = time.perf_counter()
make_features(df)
t3 = time.perf_counter()
print(json.dumps(dict(imports=t1 - t0, load=t2 - t1, first_call=t3 - t2)))
"""


def _fresh_process(cache_dir: str) -> dict:
    env = {**os.environ, 'NUMBA_CACHE_DIR': cache_dir}
    r = subprocess.run([sys.executable, '-c', _COLD], capture_output=True, text=True, env=env, timeout=300)
    if r.returncode: raise RuntimeError(f"cold-start subprocess failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _talib_runner(df):
    import talib
    o, h, l, c = (df[k].to_numpy(dtype='float64') for k in ('open', 'high', 'low', 'close'))
    def run():
        talib.RSI(c, timeperiod=14)
        talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
        talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
        talib.ATR(h, l, c, timeperiod=14)
        talib.STOCH(h, l, c, fastk_period=14, slowk_period=3, slowd_period=3)
        talib.ADX(h, l, c, timeperiod=14); talib.PLUS_DI(h, l, c, timeperiod=14); talib.MINUS_DI(h, l, c, timeperiod=14)
    return run


def bench_features(df, quick: bool) -> list[Row]:
    log("2. features: cold start in fresh processes (empty numba cache, then the cache it wrote)")
    n_cold, n_cached = (1, 1) if quick else (2, 3)
    cold, cached = [], []
    for _ in range(n_cold):
        with tempfile.TemporaryDirectory(prefix='bench-numba-') as d:
            cold.append(_fresh_process(d))
            if not cached:                                  # the processes after it load the cache it wrote
                for _ in range(n_cached): cached.append(_fresh_process(d))
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    cold_call, cold_imp = med(cold, 'first_call'), med(cold, 'imports')
    cached_call, cached_imp = med(cached, 'first_call'), med(cached, 'imports')
    log("2. features: warm calls, pandas-ta vs TA-Lib")
    n = 5 if quick else 20
    t_warm, _ = timed(lambda: make_features(df), n, warmup=2)
    subset = [i for i in DEFAULT_INDICATORS if i['kind'] in TALIB_KINDS]
    t_sub, _ = timed(lambda: calculate_technical_features(df, subset), n, warmup=2)
    try:
        t_talib, _ = timed(_talib_runner(df), n, warmup=2)
        talib_note = "TA-Lib: RSI, MACD, BBANDS, ATR, STOCH, ADX + PLUS_DI + MINUS_DI on numpy arrays"
    except ImportError:
        t_talib, talib_note = None, "TA-Lib (`talib`) is not installed: no baseline"
    bars = len(df)
    return [
        Row('features', 'make_features, first call in a fresh process, EMPTY numba cache', cold_call, 's',
            'warm call (same process, compiled)', t_warm, f"{n_cold} / {n}",
            f"numba compiles pandas-ta's kernels; imports took a further {cold_imp:.2f} s", higher_is_better=False),
        Row('features', 'make_features, first call in a fresh process, numba cache filled', cached_call, 's',
            'first call with an EMPTY cache', cold_call, f"{n_cached} / {n_cold}",
            f"imports took a further {cached_imp:.2f} s (vs {cold_imp:.2f} s with an empty cache)", higher_is_better=False),
        Row('features', f'make_features warm: 10 price + 14 indicator columns on {bars} bars (pandas-ta, talib=False)', t_warm * 1e3, 'ms',
            'TA-Lib, the 6 indicators it has', None if t_talib is None else t_talib * 1e3, f"{n} / {n}",
            talib_note + "; make_features also validates, computes price features and volume_z, cuts the warm-up",
            higher_is_better=False),
        Row('features', 'calculate_technical_features, the same 6 indicators (pandas-ta, talib=False)', t_sub * 1e3, 'ms',
            'TA-Lib, the same 6 indicators', None if t_talib is None else t_talib * 1e3, f"{n} / {n}",
            "like for like: RSI 14, MACD 12/26/9, BBANDS 20/2, ATR 14, STOCH 14/3/3, ADX 14 (+DI, -DI)",
            higher_is_better=False),
    ]

