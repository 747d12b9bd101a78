"Explorer and plots, driven without a browser"
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from trading_nb.data import load_sample, make_synthetic, make_synthetic_panel
from trading_nb.explore import (_daily_ics, _forward_returns, _panel_indicator, indicator_explorer, indicator_ic, indicator_rank_ic,
                                plot_feature_correlation, plot_ohlcv)
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
    with pytest.raises(ValueError, match="data must be 'sp500', 'nasdaq', 'stocks'"): indicator_explorer('ftse')


def test_correlation_heatmap_shape(sp):
    X = make_features(sp)
    fig = plot_feature_correlation(X)
    assert np.asarray(fig.data[0].z).shape == (X.shape[1], X.shape[1])


def test_figurewidget_starts_with_named_traces():
    "The browser builds the chart from the state the FigureWidget had when it was created: every trace named there ('trace 0' otherwise)"
    ex = indicator_explorer('sp500', kind='macd', start='2018-01-01')
    sent = ex.fig._widget_data   # what the front end receives first
    assert [t['name'] for t in sent] == ['close', 'macd_12_26_9', 'macd_signal_12_26_9', 'macd_hist_12_26_9']
    assert len(sent[0]['x']) > 0 and sent[0]['visible'] is True
    assert ex.fig._widget_layout['title']['text'] == 'sp500: macd_12_26_9, macd_signal_12_26_9, macd_hist_12_26_9'
    ex.kind.value = 'rsi'
    assert [t.name for t in ex.fig.data] == ['close', 'rsi_14', 'line 2', 'line 3']
    assert [t.visible for t in ex.fig.data] == [True, True, False, False]


def test_dict_of_frames_and_clashing_symbols():
    frames = {s: make_synthetic(400, seed=i) for i, s in enumerate(['A', 'B', 'C'])}
    ex = indicator_explorer(frames, figure_widget=False)
    assert list(ex.series.options[:3]) == ['A', 'B', 'C'] and ex.series.value == 'A'
    assert ex.panel_scores is not None and ex.panel_scores.attrs['symbols'] == ['A', 'B', 'C']
    clash = indicator_explorer({'sp500': frames['A'], 'B': frames['B'], 'C': frames['C']}, symbol='B', figure_widget=False)
    assert list(clash.series.options[:3]) == ['panel:B', 'panel:C', 'panel:sp500'] and clash.series.value == 'panel:B'
    clash.series.value = 'sp500'   # the bundled series, not the symbol called sp500
    assert len(clash.frame()) > 5000 and clash.panel_scores is None
    with pytest.raises(ValueError, match='symbol= picks a symbol of a panel'): indicator_explorer('sp500', symbol='AAPL')


def test_user_panel_with_a_bad_row():
    panel = make_synthetic_panel(4, 300, seed=1)
    bad = panel.copy()
    bad.iloc[10, bad.columns.get_loc('high')] = bad['low'].iloc[10] * 0.5
    with pytest.raises(ValueError, match="on_invalid='drop'"): indicator_explorer(bad)
    ex = indicator_explorer(bad, on_invalid='drop', figure_widget=False)
    assert '1 invalid row dropped when loading' in ex.stats.value


def test_cross_section_is_cached_per_indicator_and_horizon():
    ex = indicator_explorer('stocks:AAPL', kind='rsi', figure_widget=False)
    keys = set(ex._xs)
    for s in ('stocks:MSFT', 'stocks:IBM', 'stocks:AAPL'): ex.series.value = s
    ex.dates.index = (5, 100)
    assert set(ex._xs) == keys   # other symbols and dates: only re-summarised
    ex.horizon.value = 10
    assert len(ex._xs) == len(keys) + 1 and ('features', 'stocks', (('kind', 'rsi'), ('length', 14))) in ex._xs
    ref = indicator_rank_ic(load_sample('stocks', on_invalid='drop'), dict(kind='rsi', length=14), horizon=10,
                            start=ex.frame().index[ex.dates.value[0]], end=ex.frame().index[ex.dates.value[1]])
    np.testing.assert_allclose(ex.panel_scores[['rank_ic', 'rank_ic_lo', 'rank_ic_hi', 'n_dates']], ref[['rank_ic', 'rank_ic_lo', 'rank_ic_hi', 'n_dates']])


def test_rank_ic_uses_no_bar_after_its_forward_return():
    "Changing every bar after a date T changes no date's IC up to T - horizon, for any symbol"
    panel, h = make_synthetic_panel(8, 400, seed=3), 5
    T = panel.index.get_level_values('date').unique()[250]
    late = panel.index.get_level_values('date') > T
    bumped = panel.copy()
    bumped.loc[late, ['open', 'high', 'low', 'close']] = panel.loc[late, ['open', 'high', 'low', 'close']].to_numpy() * 1.3
    bumped.loc[late, 'volume'] = panel.loc[late, 'volume'].to_numpy()[::-1]
    spec = dict(kind='macd')
    a = _daily_ics(_panel_indicator(panel, spec), _forward_returns(panel, h), 3)
    b = _daily_ics(_panel_indicator(bumped, spec), _forward_returns(bumped, h), 3)
    cut = panel.index.get_level_values('date').unique()[250 - h]
    for c in a:
        pd.testing.assert_frame_equal(a[c].loc[:cut], b[c].loc[:cut])
        assert not np.allclose(a[c].loc[T:, 'rank_ic'].to_numpy()[:50], b[c].loc[T:, 'rank_ic'].to_numpy()[:50])


def test_rank_ic_counts_undefined_values_and_refuses_a_series(sp):
    "Undefined indicator values after the warm-up are left out of the ranking and counted, never filled"
    panel = make_synthetic_panel(5, 300, seed=5)
    feats = _panel_indicator(panel, dict(kind='rsi'))
    holes = feats.copy()
    holes.iloc[::7, 0] = np.nan
    fwd = _forward_returns(panel, 1)
    full, part = _daily_ics(feats, fwd, 3)['rsi_14'], _daily_ics(holes, fwd, 3)['rsi_14']
    assert part.attrs['undefined'] == len(holes.iloc[::7]) and full.attrs['undefined'] == 0
    assert (part['n'] <= full['n'].reindex(part.index)).all() and part['n'].sum() < full['n'].sum()
    with pytest.raises(ValueError, match='a panel is a DataFrame indexed by'): indicator_rank_ic(sp, dict(kind='rsi'))
    with pytest.raises(ValueError, match="unknown indicator kind 'ichimoku'"): indicator_rank_ic(panel, dict(kind='ichimoku'))
