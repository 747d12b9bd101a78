"Explorer and plots, driven without a browser"
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from trading_nb.data import load_sample, make_synthetic
from trading_nb.explore import indicator_explorer, indicator_ic, plot_feature_correlation, plot_ohlcv
from trading_nb.features import calculate_technical_features, make_features


@pytest.fixture(scope='module')
def sp(): return load_sample('sp500')


def test_plot_ohlcv_full_series_shared_axis(sp):
    fig = plot_ohlcv(sp)
    assert len(fig.data[0].x) == len(sp)
    assert {t.xaxis for t in fig.data} == {'x', 'x2', 'x3', 'x4'}
    assert fig.layout.xaxis4.matches == 'x' or fig.layout.xaxis.matches == 'x4' or fig.layout.xaxis2.matches is not None
    assert fig.layout.xaxis.rangeselector.buttons[-1].step == 'all'
    rsi_axis = [t for t in fig.data if t.name == 'RSI 14'][0].yaxis
    assert {s.y0 for s in fig.layout.shapes if s.yref == rsi_axis + ' domain' or s.yref == rsi_axis} >= {30, 70}


def test_plot_ohlcv_options(sp):
    fig = plot_ohlcv(sp.iloc[-300:], sma=(10,), bbands=None, panels=('volume',))
    assert [t.name for t in fig.data] == ['price', 'SMA 10', 'volume']


def test_explorer_uses_figurewidget_and_follows_widgets(sp):
    ex = indicator_explorer('sp500', kind='rsi', start='2015-01-01', end='2016-12-30')
    assert isinstance(ex.fig, go.FigureWidget)
    x = pd.DatetimeIndex(ex.fig.data[1].x)
    assert x[0] == pd.Timestamp('2015-01-02') and x[-1] == pd.Timestamp('2016-12-30')
    ex.params['length'].value = 21
    ref = calculate_technical_features(sp, [dict(kind='rsi', length=21)])['rsi_21'].loc['2015':'2016']
    assert ex.fig.data[1].name == 'rsi_21'
    assert len(ex.fig.data[1].y) <= ex.max_points + 1
    np.testing.assert_allclose([ex.fig.data[1].y[0], ex.fig.data[1].y[-1]], [ref.iloc[0], ref.iloc[-1]])
    ex.kind.value = 'stoch'
    assert [t.name for t in ex.fig.data[1:] if t.visible] == ['stoch_k_14_3_3', 'stoch_d_14_3_3']
    assert ex.fig.data[3].visible is False
    assert set(ex.params) == {'k', 'd', 'smooth_k'}
    ex.horizon.value = 20
    want = indicator_ic(calculate_technical_features(sp, [dict(kind='stoch')])['stoch_k_14_3_3'].loc['2015':'2016'], sp.close, 20)
    assert np.isclose(ex.scores.loc['stoch_k_14_3_3', 'ic'], want['ic'])
    assert '20-bar forward return' in ex.stats.value
    ex.kind.value = 'dpo'
    assert 'not causal' in ex.warning.value
    ex.params['centered'].value = False
    assert ex.warning.value == ''


def test_explorer_with_a_frame_and_series_switch():
    syn = make_synthetic(600, seed=4)
    ex = indicator_explorer(syn, kind='macd')
    assert ex.series.value == 'frame' and len(ex.fig.data[0].x) <= ex.max_points + 1 and ex.fig.data[0].x[-1] == syn.index[-1]
    ex.series.value = 'nasdaq'
    assert ex.fig.layout.title.text.startswith('nasdaq')
    with pytest.raises(ValueError, match='unknown indicator kind'): indicator_explorer(syn, kind='ichimoku')
    with pytest.raises(ValueError, match="data must be 'sp500', 'nasdaq' or an OHLCV DataFrame"): indicator_explorer('ftse')


def test_correlation_heatmap_shape(sp):
    X = make_features(sp)
    fig = plot_feature_correlation(X)
    assert np.asarray(fig.data[0].z).shape == (X.shape[1], X.shape[1])
