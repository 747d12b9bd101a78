"Feature stage: independent references, warm-up rule vs measurement, causality, normalisation, errors"
import numpy as np
import pandas as pd
import pytest
import talib

from trading_nb.data import DataError, load_sample, make_synthetic
from trading_nb.features import (DEFAULT_INDICATORS, INDICATOR_PARAMS, CausalityError, calculate_price_features,
                                 calculate_technical_features, check_causality, feature_columns, make_features,
                                 normalize_features, warmup_bars, warmup_sensitivity)


@pytest.fixture(scope='module')
def sp(): return load_sample('sp500')


@pytest.fixture(scope='module')
def nq(): return load_sample('nasdaq')


def rel_err(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.median(np.abs(b)))))


# --- short reference implementations, written from the textbook definitions -------------------------------
def ref_wilder_rsi(close, n):
    "Wilder: average gain/loss seeded with the simple mean of the first n changes, then (prev*(n-1)+x)/n"
    d = np.diff(close)
    g, l = np.clip(d, 0, None), np.clip(-d, 0, None)
    out = np.full(len(close), np.nan)
    ag, al = g[:n].mean(), l[:n].mean()
    out[n] = 100 * ag / (ag + al)
    for i in range(n, len(d)):
        ag, al = (ag * (n - 1) + g[i]) / n, (al * (n - 1) + l[i]) / n
        out[i + 1] = 100 * ag / (ag + al)
    return out


def ref_ema(x, n):
    a, out = 2 / (n + 1), np.full(len(x), np.nan)
    first = np.flatnonzero(~np.isnan(x))[0]
    out[first + n - 1] = np.mean(x[first:first + n])
    for i in range(first + n, len(x)): out[i] = a * x[i] + (1 - a) * out[i - 1]
    return out


def test_rsi_is_wilder(sp):
    w = warmup_bars([dict(kind='rsi', length=14)])
    got = calculate_technical_features(sp, [dict(kind='rsi', length=14)])['rsi_14'].to_numpy()
    ref = ref_wilder_rsi(sp.close.to_numpy(), 14)
    assert rel_err(got[w:], ref[w:]) < 1e-6
    assert rel_err(got[w:], talib.RSI(sp.close, 14).to_numpy()[w:]) < 1e-6


def test_macd_is_ema_difference(sp):
    c = sp.close.to_numpy()
    macd = ref_ema(c, 12) - ref_ema(c, 26)
    sig = ref_ema(macd, 9)
    f = calculate_technical_features(sp, [dict(kind='macd', fast=12, slow=26, signal=9)])
    w = warmup_bars([dict(kind='macd')])
    assert rel_err(f['macd_12_26_9'].to_numpy()[w:], (macd / c)[w:]) < 1e-6
    assert rel_err(f['macd_signal_12_26_9'].to_numpy()[w:], (sig / c)[w:]) < 1e-6
    assert rel_err(f['macd_hist_12_26_9'].to_numpy()[w:], ((macd - sig) / c)[w:]) < 1e-6


def test_bollinger_uses_population_std(sp):
    f = calculate_technical_features(sp, [dict(kind='bbands', length=20, std=2.0)])
    m, s = sp.close.rolling(20).mean(), sp.close.rolling(20).std(ddof=0)
    np.testing.assert_allclose(f['bb_upper_20_2'][19:], ((m + 2 * s) / sp.close - 1)[19:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f['bb_lower_20_2'][19:], ((m - 2 * s) / sp.close - 1)[19:], rtol=1e-9, atol=1e-12)
    up, _, lo = talib.BBANDS(sp.close, 20, 2, 2)
    np.testing.assert_allclose(f['bb_upper_20_2'][19:], (up / sp.close - 1)[19:], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize('kind,cols,ref', [
    ('atr', ['atr_14'], lambda d: talib.ATR(d.high, d.low, d.close, 14) / d.close),
    ('adx', ['adx_14'], lambda d: talib.ADX(d.high, d.low, d.close, 14)),
    ('stoch', ['stoch_k_14_3_3'], lambda d: talib.STOCH(d.high, d.low, d.close, 14, 3, 0, 3, 0)[0]),
    ('willr', ['willr_14'], lambda d: talib.WILLR(d.high, d.low, d.close, 14)),
    ('roc', ['roc_10'], lambda d: talib.ROC(d.close, 10)),
])
def test_against_talib_after_warmup(sp, kind, cols, ref):
    w = warmup_bars([dict(kind=kind)])
    f = calculate_technical_features(sp, [dict(kind=kind)])
    assert rel_err(f[cols[0]].to_numpy()[w:], ref(sp).to_numpy()[w:]) < 1e-6


@pytest.mark.parametrize('ind', [None, [dict(kind='adx', length=5), dict(kind='stoch', k=5, d=4, smooth_k=2), dict(kind='dpo', centered=False)]])
def test_same_numbers_with_or_without_talib_installed(sp, monkeypatch, ind):
    "pandas-ta's adx calls atr without forwarding talib=False (ADX is built from its parts instead); stoch's SMA is TA-Lib's or numba's"
    import pandas_ta.maps
    with_talib = calculate_technical_features(sp, ind)
    monkeypatch.setitem(pandas_ta.maps.Imports, 'talib', False)
    without = calculate_technical_features(sp, ind)
    pd.testing.assert_frame_equal(without.isna(), with_talib.isna())        # the same NaN pattern from the first bar
    for c in with_talib.columns:
        if c.startswith(('adx', 'dmp', 'dmn')): np.testing.assert_array_equal(without[c], with_talib[c])
        else: assert rel_err(without[c].dropna(), with_talib[c].dropna()) < 1e-12, c


def test_volume_zscore(sp):
    z = calculate_technical_features(sp, [dict(kind='volume_z', length=20)])['volume_z_20']
    v = sp.volume
    ref = (v - v.rolling(20).mean()) / v.rolling(20).std(ddof=0)
    np.testing.assert_allclose(z[19:], ref[19:], rtol=1e-7, atol=1e-9)
    flat = make_synthetic(100, seed=0).assign(volume=1000.0)
    assert (calculate_technical_features(flat, [dict(kind='volume_z')])['volume_z_20'].iloc[19:] == 0).all()


# --- warm-up ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('ind', [dict(kind='rsi', length=7), dict(kind='rsi', length=30), dict(kind='macd', fast=5, slow=35, signal=5),
                                 dict(kind='adx', length=20), dict(kind='atr', length=5), dict(kind='stoch', k=30, d=5, smooth_k=5)])
def test_warmup_rule_covers_measurement(sp, ind):
    need = warmup_sensitivity(sp, [ind], starts=(100, 700), horizon=1200)
    assert warmup_bars([ind]) >= need.max(), (warmup_bars([ind]), need.to_dict())


def test_warmup_independent_of_start(sp):
    "After the cut, features computed from two different starting bars agree to 1e-6"
    a = make_features(sp)
    b = make_features(sp.iloc[500:])
    common = b.index
    assert rel_err(b.to_numpy(), a.loc[common].to_numpy()) < 1e-6


# --- columns, shapes, errors --------------------------------------------------------------------------------
@pytest.mark.parametrize('kind', sorted(INDICATOR_PARAMS))
def test_feature_columns_match_output(kind, sp):
    f = calculate_technical_features(sp.iloc[:300], [dict(kind=kind)])
    assert list(f.columns) == feature_columns([dict(kind=kind)])['technical']
    assert f.index.equals(sp.index[:300])


def test_make_features_contract(sp, nq):
    for d in (sp, nq, make_synthetic(800, seed=2)):
        X = make_features(d)
        cols = feature_columns()
        assert list(X.columns) == cols['price'] + cols['technical']
        assert X.attrs['warmup'] == warmup_bars() and len(X) == len(d) - warmup_bars()
        assert X.index.equals(d.index[warmup_bars():]) and np.isfinite(X.to_numpy()).all()
        assert set(X.dtypes) == {np.dtype('float64')}


def test_user_indicator_set_flows_through(sp):
    ind = [dict(kind='rsi', length=7), dict(kind='bbands', length=10, std=1.5)]
    X = make_features(sp, ind)
    assert list(X.columns[-3:]) == ['rsi_7', 'bb_upper_10_1.5', 'bb_lower_10_1.5']
    assert X.attrs['indicators'] == [dict(kind='rsi', length=7), dict(kind='bbands', length=10, std=1.5)]
    assert DEFAULT_INDICATORS[0] == dict(kind='rsi', length=14)   # not mutated


@pytest.mark.parametrize('ind,msg', [
    ([dict(kind='foo')], "unknown indicator kind 'foo'"), ([dict(kind='rsi', window=3)], "unknown parameter 'window' for 'rsi'"),
    ([dict(kind='rsi', length=-3)], 'positive integer'), ([dict(kind='rsi', length=True)], 'positive integer'),
    ([dict(kind='bbands', std=float('nan'))], 'positive number'), ([dict(kind='dpo', centered='yes')], 'True or False'),
    ([dict(kind='macd', fast=30)], 'must be shorter than slow'), ([{'length': 3}], "with a 'kind' key"),
])
def test_bad_indicator_specs(ind, msg, sp):
    for f in (lambda: feature_columns(ind), lambda: warmup_bars(ind), lambda: make_features(sp, ind)):
        with pytest.raises(ValueError, match=None) as e: f()
        assert msg in str(e.value)


def test_make_features_errors(sp):
    with pytest.raises(DataError, match='warm-up rows'): make_features(sp.iloc[:200])
    with pytest.raises(DataError, match="column 'low' has a non-positive price"): make_features(sp.assign(low=0.0))
    with pytest.raises(DataError, match=r"feature 'dpo_20_centered' is nan at 2018-12-\d\d"): make_features(sp, [dict(kind='dpo')])


def test_price_features_definitions(sp):
    p = calculate_price_features(sp)
    i = 100
    assert np.isclose(p['gap'].iloc[i], sp.open.iloc[i] / sp.close.iloc[i - 1] - 1)
    assert np.isclose(p['range'].iloc[i], (sp.high.iloc[i] - sp.low.iloc[i]) / sp.close.iloc[i])
    assert np.isclose(p['vol_20'].iloc[i], np.log(sp.close).diff().iloc[i - 19:i + 1].std())
    assert np.isclose(p['volume_chg'].iloc[i], np.log1p(sp.volume.iloc[i]) - np.log1p(sp.volume.iloc[i - 1]))


# --- causality ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', ['sp500', 'nasdaq'])
def test_default_set_is_causal(name):
    d = load_sample(name)
    assert len(check_causality(d, n_cuts=8, seed=3)) == 0
    check_causality(d, strict=True)   # does not raise


def test_all_causal_kinds_pass_and_dpo_fails(sp):
    kinds = [dict(kind=k) for k in INDICATOR_PARAMS if k != 'dpo'] + [dict(kind='dpo', centered=False)]
    assert len(check_causality(sp.iloc[:1500], kinds, n_cuts=4)) == 0
    r = check_causality(sp, [dict(kind='dpo')])
    assert list(r['column']) == ['dpo_20_centered']
    with pytest.raises(CausalityError, match='not causal'): check_causality(sp, [dict(kind='dpo')], strict=True)


def test_causality_catches_value_leaks(sp):
    "Leaks that leave no NaN: a backward fill and a full-sample z-score"
    bfill = lambda d: pd.DataFrame({'x': d.close.shift(-1).ffill()})   # tomorrow's close, the last one filled
    zfull = lambda d: pd.DataFrame({'z': (d.close - d.close.mean()) / d.close.std()})
    for fn, col in ((bfill, 'x'), (zfull, 'z')):
        r = check_causality(sp, feature_fn=fn)
        assert list(r['column']) == [col] and r['problem'][0] == 'value changed'
    ok = lambda d: pd.DataFrame({'m': d.close.expanding().mean()})
    assert len(check_causality(sp, feature_fn=ok)) == 0


# --- normalisation ------------------------------------------------------------------------------------------
def test_normalize_fits_on_train_only(sp):
    X = make_features(sp)
    tr, te = X.iloc[:2000], X.iloc[2000:]
    _, sc = normalize_features(tr)
    np.testing.assert_allclose(sc['mean'], tr.mean().to_numpy())
    z, sc2 = normalize_features(te, sc)
    assert sc2 == sc
    np.testing.assert_allclose(z.to_numpy(), ((te - tr.mean()) / tr.std(ddof=0)).to_numpy(), rtol=1e-10, atol=1e-12)
    import json; json.dumps(sc)   # plain numbers


def test_normalize_errors(sp):
    X = make_features(sp).iloc[:300]
    _, sc = normalize_features(X)
    with pytest.raises(ValueError, match="missing from the features"): normalize_features(X.drop(columns='rsi_14'), sc)
    with pytest.raises(ValueError, match="lacks"): normalize_features(X, {'columns': list(X.columns)})
    with pytest.raises(DataError, match='empty'): normalize_features(X.iloc[:0])
    z, sc = normalize_features(X.assign(gap=5.0))
    assert sc['scale'][list(X.columns).index('gap')] == 1.0 and (z['gap'] == 0).all()
