"Random OHLCV walks with the awkward cases real bars have, shared by the incremental-feature and stream tests"
import numpy as np
import pandas as pd


def ohlcv_walk(n, seed, flat=0.05, zero_runs=3, flat_start=0, flat_runs=0):
    "Random OHLCV: a share `flat` of flat bars, runs of zero volume, `flat_start` identical first bars, `flat_runs` runs of 20 flat bars"
    r = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(r.normal(0, 0.01, n)))
    o = c * np.exp(r.normal(0, 0.003, n))
    h, l = np.maximum(o, c) * np.exp(np.abs(r.normal(0, 0.004, n))), np.minimum(o, c) * np.exp(-np.abs(r.normal(0, 0.004, n)))
    v = r.lognormal(10, 0.5, n)
    f = r.random(n) < flat
    o[f] = h[f] = l[f] = c[f]
    for s in r.integers(0, n - 30, zero_runs): v[s:s + r.integers(3, 30)] = 0.0
    for s in r.integers(300, n - 30, flat_runs): o[s:s + 20] = h[s:s + 20] = l[s:s + 20] = c[s:s + 20] = c[s]
    o[:flat_start] = h[:flat_start] = l[:flat_start] = c[:flat_start] = c[0]
    v[:flat_start] = 1000.0
    return pd.DataFrame(dict(open=o, high=h, low=l, close=c, volume=v), index=pd.date_range('2000-01-03', periods=n, freq='B', name='date'))
