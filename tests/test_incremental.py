"Incremental features: parity with make_features (series x TA-Lib x indicator sets), edge cases, bad bars, the state's API"
import numpy as np
import pandas as pd
import pytest
import pandas_ta.maps

from trading_nb.data import OHLCV_COLS, DataError, load_sample
from trading_nb.features import INDICATOR_PARAMS, _raw_features, feature_columns, make_features, warmup_bars
from trading_nb.incremental import CAUSAL_INDICATORS, IncrementalFeatures, incremental_features
from walks import ohlcv_walk   # tests/walks.py

TOL = 1e-9


def worst(inc: pd.DataFrame, ref: pd.DataFrame) -> dict:
    "Per column: largest |a - b| / max(|b|, median |b|, 1e-6), or inf where the NaN patterns differ"
    out = {}
    for col in ref.columns:
        a, b = inc[col].to_numpy(), ref[col].to_numpy()
        ok = ~np.isnan(b)
        if not np.array_equal(np.isnan(a), ~ok): out[col] = np.inf; continue
        if not ok.any(): out[col] = 0.0; continue
        scale = np.maximum(np.maximum(np.abs(b[ok]), np.median(np.abs(b[ok]))), 1e-6)   # features are scale-free: below 1e-6 is rounding noise
        out[col] = float(np.max(np.abs(a[ok] - b[ok]) / scale))
    return out


SERIES = {
    'sp500': lambda: load_sample('sp500'),
    'nasdaq': lambda: load_sample('nasdaq'),
    'walk0': lambda: ohlcv_walk(1500, 0),
    'walk1-flat30%': lambda: ohlcv_walk(1500, 1, flat=0.3),
    'walk2-flat-start': lambda: ohlcv_walk(1200, 2, flat_start=300),
    'walk3-flat-runs': lambda: ohlcv_walk(1500, 3, flat_runs=4, zero_runs=6),
    'walk4-constant': lambda: ohlcv_walk(400, 4, flat_start=400),
}


@pytest.fixture(scope='module', params=list(SERIES))
def series(request): return request.param, SERIES[request.param]()


@pytest.mark.parametrize('talib', [True, False], ids=['talib', 'no-talib'])
@pytest.mark.parametrize('inds', [None, CAUSAL_INDICATORS], ids=['default', 'every-causal-kind'])
def test_parity_every_row(series, talib, inds, monkeypatch):
    "Every row (warm-up included) equals the batch features to 1e-9 with the same NaN pattern, TA-Lib importable or not"
    name, df = series
    monkeypatch.setitem(pandas_ta.maps.Imports, 'talib', talib)
    errs = worst(incremental_features(df, inds, all_rows=True), _raw_features(df, inds))
    bad = {k: v for k, v in errs.items() if not v < TOL}
    assert not bad, f"{name}: {bad}"


@pytest.mark.parametrize('talib', [True, False], ids=['talib', 'no-talib'])
def test_equals_make_features_after_warmup(talib, monkeypatch):
    monkeypatch.setitem(pandas_ta.maps.Imports, 'talib', talib)
    for df in (load_sample('nasdaq'), ohlcv_walk(1500, 5, flat=0.2)):
        inc, ref = incremental_features(df), make_features(df)
        pd.testing.assert_index_equal(inc.index, ref.index)
        assert list(inc.columns) == list(ref.columns)
        assert max(worst(inc, ref).values()) < TOL


def other_value(v):
    if isinstance(v, bool): return not v
    return v + 3 if isinstance(v, int) else v * 1.25


@pytest.mark.parametrize('kind,param', [(k, p) for k, ps in INDICATOR_PARAMS.items() for p in ps])
def test_every_parameter_streams(kind, param):
    "Each parameter changed (as the features' per-parameter test changes it, and to the shortest windows) streams to the batch numbers"
    df = ohlcv_walk(700, 6, flat=0.2)
    v = INDICATOR_PARAMS[kind][param]
    tried = 0
    for value in [other_value(v)] + ([2, 1] if isinstance(v, int) and not isinstance(v, bool) else []):
        ind = [{'kind': kind, **({'centered': False} if kind == 'dpo' else {}), param: value}]
        try: feature_columns(ind)
        except ValueError: continue                                                  # a refused combination (e.g. macd slow=2 < fast)
        errs = worst(incremental_features(df, ind, all_rows=True), _raw_features(df, ind))
        assert max(errs.values()) < TOL, (ind, errs)
        tried += 1
    assert tried >= 1


def test_zero_ranges_match_batch():
    "A constant series: every range zero, no moves: the same numbers (0, epsilon ranges) and NaNs (RSI, ADX, Williams %R) as the batch"
    df = ohlcv_walk(400, 7, flat_start=400)
    inc, ref = incremental_features(df, CAUSAL_INDICATORS, all_rows=True), _raw_features(df, CAUSAL_INDICATORS)
    assert inc['rsi_14'].isna().all() and inc['willr_14'].isna().all() and inc['adx_14'].isna().all()
    assert (inc['stoch_k_14_3_3'].dropna() == 0).all() and (inc['volume_z_20'].dropna() == 0).all()
    assert max(worst(inc, ref).values()) < TOL


def test_warm_and_update_equal_make_features_on_held_bars():
    "The stream's use: warm on the held bars, take the next: the row equals make_features' last row over those bars"
    sp = load_sample('sp500')
    w = warmup_bars()
    for end in (w + 10, 2000, len(sp)):
        bars = sp.iloc[end - w - 2:end]
        st = IncrementalFeatures().warm(bars.iloc[:-1])
        row = st.update(*bars.iloc[-1][list(OHLCV_COLS)])
        assert st.ready and st.n_bars == w + 2
        np.testing.assert_allclose(row, make_features(bars).iloc[-1].to_numpy(), rtol=1e-12, atol=1e-15)


def test_ready_and_warmup_rows():
    st = IncrementalFeatures()
    sp = load_sample('sp500').iloc[:warmup_bars() + 1]
    for bar in sp[list(OHLCV_COLS)].to_numpy():
        assert st.ready is False
        row = st.update(*bar)
    assert st.ready and not np.isnan(row).any()
    assert len(incremental_features(sp)) == 1


@pytest.mark.parametrize('bar,msg', [
    ((1, 2, 1, np.nan, 5), 'close is nan'), ((1, 2, 1, np.inf, 5), 'close is inf'), ((1, 2, 1, 1.5, -1), 'volume is negative'),
    ((1, 0.5, 1, 1, 5), 'high 0.5 is below low 1.0'), ((0, 2, 1, 1.5, 5), 'open is a non-positive price'),
    ((3, 2, 1, 1.5, 5), 'high 2.0 is below open 3.0'), ((1.3, 2, 1.2, 1.1, 5), 'low 1.2 is above close 1.1')])
def test_bad_bar_changes_nothing(bar, msg):
    sp = load_sample('sp500')
    a, b = IncrementalFeatures().warm(sp.iloc[:300]), IncrementalFeatures().warm(sp.iloc[:300])
    with pytest.raises(DataError, match=msg): a.update(*bar)
    assert a.n_bars == 300
    nxt = sp.iloc[300][list(OHLCV_COLS)]
    np.testing.assert_array_equal(a.update(*nxt), b.update(*nxt))


def test_copy_is_independent():
    sp = load_sample('sp500')
    bars = sp[list(OHLCV_COLS)].to_numpy()
    a = IncrementalFeatures(CAUSAL_INDICATORS).warm(sp.iloc[:300])
    b = a.copy()
    rb = [b.update(*bar) for bar in bars[300:320]]          # the copy moves on
    assert a.n_bars == 300 and b.n_bars == 320
    ra = [a.update(*bar) for bar in bars[300:320]]          # the original, untouched by it, gives the same rows
    np.testing.assert_array_equal(np.array(ra), np.array(rb))


def test_refusals():
    with pytest.raises(ValueError, match="dpo with centered=True reads bars after"): IncrementalFeatures([dict(kind='dpo')])
    with pytest.raises(ValueError, match="unknown indicator kind"): IncrementalFeatures([dict(kind='rsx')])
    with pytest.raises(DataError): IncrementalFeatures().warm(load_sample('sp500').assign(close=np.nan))


def test_state_is_bounded():
    "Memory does not grow with the bars taken: every buffer has a fixed maximum length"
    st = IncrementalFeatures(CAUSAL_INDICATORS).warm(load_sample('sp500'))
    from collections import deque
    def buffers(x):
        if isinstance(x, deque): yield x
        for s in getattr(type(x), '__slots__', ()):
            v = getattr(x, s)
            for item in (v if isinstance(v, list) else [v]): yield from buffers(item)
    bufs = [b for p in st._parts for b in buffers(p)]
    assert bufs and all(b.maxlen is not None and b.maxlen <= 51 for b in bufs)
    assert all(getattr(e, 'first', None) is None for p in st._parts for e in [p] + [getattr(p, s) for s in type(p).__slots__])
