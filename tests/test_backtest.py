"Practitioner backtests: the import layer, no look-ahead by perturbation, spread recovery, the bounce proof on a second panel, defaults unchanged, bad input"
import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trading_nb.backtest import (COSTS, EXECUTIONS, SPREAD_METHODS, _scramble_after, book_capacity, estimate_spread, execution_inputs,
                                 execution_returns, factor_baselines, factor_scores, make_illiquid_panel, market_diagnostics,
                                 panel_backtest, plausibility_warnings, series_backtest, stale_bars, tradable_universe)
from trading_nb.cross_section import cross_sectional_compare, cross_sectional_verdict, daily_ic, portfolio_backtest
from trading_nb.data import load_panel, load_sample, make_synthetic_panel
from trading_nb.evaluate import backtest

PKG = Path(__file__).resolve().parents[1] / 'trading_nb'


def imported(module: str) -> set:
    "The trading_nb modules `module` imports, from its source (inside functions too)"
    out = set()
    for node in ast.walk(ast.parse((PKG / f'{module}.py').read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level == 1: out.add(node.module.split('.')[0])
            elif node.module.startswith('trading_nb.'): out.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('trading_nb.')}
    return out


def test_layers():
    assert imported('backtest') <= {'data', 'evaluate', 'cross_section', 'features'}, imported('backtest')
    assert imported('cross_section') <= {'evaluate'}
    assert imported('evaluate') == set()


def windows(panel, start=60):
    "Every (symbol, date) from the `start`-th date on: the windows of a test period"
    day = panel.index.get_level_values('date')
    idx = panel.index[np.asarray(day >= day.unique()[start])]
    return idx.get_level_values('symbol'), idx.get_level_values('date')


PANEL = make_illiquid_panel(n_symbols=15, n=300, seed=11)
REAL = load_sample('stocks', on_invalid='drop')


@pytest.mark.parametrize('bars', ['simulated', 'stocks'])
@pytest.mark.parametrize('frac', [0.2, 0.55, 0.9])
def test_nothing_at_t_depends_on_bars_after_t(bars, frac):
    df = PANEL if bars == 'simulated' else REAL
    days = df.index.get_level_values('date').unique().sort_values()
    t = days[int(frac * (len(days) - 1))]
    later = _scramble_after(df, t, seed=int(100 * frac))
    upto = np.asarray(df.index.get_level_values('date') <= t)
    assert not np.allclose(later.close.to_numpy()[~upto], df.close.to_numpy()[~upto])
    for m in SPREAD_METHODS: pd.testing.assert_series_equal(estimate_spread(later, m)[upto], estimate_spread(df, m)[upto])
    pd.testing.assert_frame_equal(tradable_universe(later, 1e4, 2)[upto], tradable_universe(df, 1e4, 2)[upto])
    pd.testing.assert_series_equal(stale_bars(later)[upto], stale_bars(df)[upto])
    pd.testing.assert_frame_equal(factor_scores(later)[upto], factor_scores(df)[upto])
    # the windows' inputs known at the decision (spread, half spread, universe) too; only the return looks ahead, by definition
    idx = df.index[upto & (df.groupby(level='symbol').cumcount() >= 30).to_numpy()]   # each name's bars from its 31st on
    sym, d = idx.get_level_values('symbol'), idx.get_level_values('date')
    a, b = (execution_inputs(x, d, sym, min_traded_value=1e4, costs='spread') for x in (df, later))
    known = ['spread', 'traded_value', 'stale_bars', 'low_value', 'stale', 'short_history', 'tradable', 'stale_bar']
    pd.testing.assert_frame_equal(a[known], b[known])
    last = (d == t)     # the window at t itself: its return uses the (changed) bars after t
    assert not np.allclose(a.ret[last & a.usable].to_numpy(), b.ret[last & b.usable].to_numpy())


@pytest.mark.parametrize('spread, tol', [(0.01, 0.10), (0.02, 0.10), (0.005, 0.20)])
@pytest.mark.parametrize('seed', [0, 1])
def test_spread_recovered(spread, tol, seed):
    "A liquid simulated market (a trade at each of 50 moments a bar, 1% daily volatility): the median estimate is within `tol` of the truth"
    p = make_illiquid_panel(n_symbols=10, n=400, spread=spread, vol=0.01, trades=50, steps=50, seed=seed)
    for m in SPREAD_METHODS:
        med = estimate_spread(p, m).median()
        assert abs(med / spread - 1) < tol, (m, med)


def test_bounce_looks_excellent_naive_and_earns_nothing_practitioner():
    "The proof on a second panel: scores = minus the last move"
    p = make_illiquid_panel(n_symbols=30, n=400, seed=7)
    sym, d = windows(p)
    bounce = factor_baselines(p, d, sym).reversal.to_numpy()
    _, naive = panel_backtest(p, bounce, d, sym, execution='close', costs='bps', min_traded_value=None, max_stale=None, n_boot=100)
    eq, prac = panel_backtest(p, bounce, d, sym, min_traded_value=1e4, max_stale=2, n_boot=100)
    n, t = naive['tradable'], prac['tradable']
    assert n['rank_ic'] > 0.1 and n['long_short']['sharpe'] > 5 and n['long_short']['annual_return'] > 1
    assert len(naive['warnings']) >= 2 and all('bid-ask bounce' in w for w in naive['warnings'])
    se = eq.long_short_gross.std() / np.sqrt(len(eq)) * 252
    assert abs(t['rank_ic']) < 0.05 and abs(t['gross_annual_return']) < 3 * se
    assert t['simple_annual_return'] < 0 and prac['warnings'] == []
    assert prac['execution'] == 'next_open' and prac['costs']['model'] == 'spread' and prac['costs']['half_spread_median_bp'] > 10
    assert prac['windows']['no_future_bars'] == 2 * 30 and naive['windows']['no_future_bars'] == 30


def test_window_order_does_not_matter():
    sym, d = windows(PANEL, 100)
    s = factor_baselines(PANEL, d, sym).reversal.to_numpy()
    o = np.random.default_rng(0).permutation(len(s))
    eq_a, a = panel_backtest(PANEL, s, d, sym, min_traded_value=1e3, n_boot=50)
    eq_b, b = panel_backtest(PANEL, s[o], d[o], sym[o], min_traded_value=1e3, n_boot=50)
    pd.testing.assert_frame_equal(eq_a, eq_b)
    assert a == b


def test_close_execution_is_the_datasets_target():
    from trading_nb.dataset import chronological_split
    panel = make_synthetic_panel(n_symbols=4, n=400, seed=2)
    _, _, test = chronological_split(panel, lookback=20, horizon=2, val_frac=0.2, test_frac=0.2)
    x = execution_inputs(panel, test.dates, test.symbols, horizon=2, execution='close', costs='bps')
    np.testing.assert_allclose(x.ret.to_numpy(), np.asarray(test.future_returns, 'float64'), rtol=0, atol=1e-12)
    nxt = execution_inputs(panel, test.dates, test.symbols, horizon=2)
    assert nxt.attrs['no_future_bars'] == 4 and not nxt.ret.equals(x.ret)


def test_defaults_unchanged_and_all_tradable_is_all():
    p = make_synthetic_panel(n_symbols=8, n=120, seed=4)
    r = p.close.groupby(level='symbol').shift(-1) / p.close - 1
    ok = r.notna().to_numpy()
    sym, d, ret = p.index.get_level_values('symbol')[ok], p.index.get_level_values('date')[ok], r.to_numpy()[ok]
    s = np.random.default_rng(0).standard_normal(len(ret))
    plain, st = portfolio_backtest(s, ret, d, symbols=sym, cost_bps=3)
    same, st2 = portfolio_backtest(s, ret, d, symbols=sym, cost_bps=3, half_spread=None, tradable=None)
    pd.testing.assert_frame_equal(plain, same, check_exact=True)
    assert repr(st) == repr(st2)
    every, st3 = portfolio_backtest(s, ret, d, symbols=sym, cost_bps=3, tradable=np.ones(len(s), bool))
    pd.testing.assert_frame_equal(every.drop(columns='n_excluded'), plain, check_exact=True)
    assert (every.n_excluded == 0).all()
    zero, _ = portfolio_backtest(s, ret, d, symbols=sym, cost_bps=3, half_spread=np.zeros(len(s)))
    np.testing.assert_allclose(zero.long_short.to_numpy(), plain.long_short.to_numpy(), rtol=1e-13)
    kw = dict(symbols=sym, n_boot=100)
    scores = {'model': s, 'other': np.random.default_rng(1).standard_normal(len(s))}
    pd.testing.assert_frame_equal(cross_sectional_compare(scores, ret, d, tradable=np.ones(len(s), bool), **kw), cross_sectional_compare(scores, ret, d, **kw))
    # a tradable mask: the IC on those windows only, the verdict too
    mask = np.random.default_rng(2).uniform(size=len(s)) > 0.3
    cmp = cross_sectional_compare(scores, ret, d, tradable=mask, **kw)
    assert cmp.loc['model', 'rank_ic'] == pytest.approx(daily_ic(s[mask], ret[mask], d[mask]).rank_ic.mean(), abs=1e-15)
    assert cmp.attrs['tradable_share'] == pytest.approx(mask.mean())
    v = cross_sectional_verdict(scores, ret, d, tradable=mask, symbols=sym, n_boot=100)
    assert v == cross_sectional_verdict({k: x[mask] for k, x in scores.items()}, ret[mask], d[mask], symbols=sym[mask], n_boot=100)
    # the series backtest with zero half spreads is the flat-cost one
    one = ret[:100]; dd = pd.bdate_range('2020-01-01', periods=100)
    a, sa = backtest(np.linspace(0.2, 0.8, 100), one, dd, half_spread=np.zeros(100))
    b, sb = backtest(np.linspace(0.2, 0.8, 100), one, dd)
    np.testing.assert_allclose(a.equity.to_numpy(), b.equity.to_numpy(), rtol=1e-14)


def test_series_backtest_horizon_and_costs():
    sp = load_sample('sp500')
    d = sp.index[300:1300]
    p = np.random.default_rng(0).uniform(size=len(d))
    eq, st = series_backtest(sp, p, d, horizon=3, execution='close', costs='bps', cost_bps=2)
    fwd = (sp.close.shift(-3) / sp.close - 1).loc[d].to_numpy()
    ref, ref_st = backtest(p, fwd, d, cost_bps=2, horizon=3)
    pd.testing.assert_frame_equal(eq, ref)
    assert st['strategy'] == ref_st['strategy'] and st['windows']['no_future_bars'] == 0
    eq_s, st_s = series_backtest(sp, p, d, horizon=3)
    assert st_s['execution'] == 'next_open' and st_s['costs']['model'] == 'spread' and st_s['costs']['cost_per_unit'] > 2e-4
    assert eq_s.attrs['half_spread'] and (eq_s.cost >= 0).all()


def test_simulated_panel_is_valid_ohlcv():
    p = make_illiquid_panel(n_symbols=6, n=200, seed=3, signal=0.1)
    back = load_panel(p.drop(columns='alpha'))
    pd.testing.assert_frame_equal(back, p.drop(columns='alpha'))
    assert set(p.attrs['spread']) == set(p.index.unique('symbol')) and (p.volume[p.volume > 0] >= 10).all()


def test_capacity_and_warnings():
    s, per = book_capacity(pd.to_datetime(['2024-01-02', '2024-01-02', '2024-01-03']), [0.5, -0.5, 1.0], [1e6, 1e5, 1e6], participation=0.05)
    assert per.tolist() == [0.05 * 1e5 / 0.5, 0.05 * 1e6] and s['capital_min'] == 1e4
    diag = market_diagnostics(PANEL)
    assert set(diag) == {'stale_share', 'lag1_autocorr', 'spread_median'}
    w = plausibility_warnings(sharpe=6, diagnostics=diag)
    assert len(w) == 1 and 'Likely causes measured on this data' in w[0] and 'Sharpe ratio of 6.0' in w[0]
    assert plausibility_warnings(sharpe=float('nan'), rank_ic=None) == []


BAD = [
    ('execution', lambda: execution_returns(PANEL, 1, 'open'), "execution must be one of ('next_open', 'next_close', 'close')"),
    ('horizon', lambda: execution_returns(PANEL, -1), "horizon must be an integer >= 1"),
    ('method', lambda: estimate_spread(PANEL, 'hl'), "method must be one of"),
    ('costs', lambda: execution_inputs(PANEL, *windows(PANEL)[::-1], costs='quotes'), "costs must be one of ('bps', 'spread')"),
    ('cost_bps', lambda: execution_inputs(PANEL, *windows(PANEL)[::-1], cost_bps=-2), "cost_bps must be >= 0"),
    ('missing window', lambda: execution_inputs(PANEL, ['2031-01-01'], ['S000']), "window 0 (symbol S000, date 2031-01-01 00:00:00) has no bar"),
    ('no symbols', lambda: execution_inputs(PANEL, windows(PANEL)[1]), "pass symbols="),
    ('nan price', lambda: estimate_spread(PANEL.assign(high=PANEL.high.where(PANEL.index != PANEL.index[5]))), "column 'high' has a non-positive, NaN or inf value nan at ('S000'"),
    ('unsorted', lambda: stale_bars(PANEL.iloc[::-1]), "dates are not strictly increasing within a symbol"),
    ('min_traded_value', lambda: tradable_universe(PANEL, float('nan')), "min_traded_value must be a number >= 0 or None"),
    ('window', lambda: tradable_universe(PANEL, window=0), "window must be an integer >= 1"),
    ('scores', lambda: panel_backtest(PANEL, np.ones(3), *windows(PANEL)[::-1]), "scores must be 1-D with one entry per window"),
    ('participation', lambda: book_capacity(['2024-01-02'], [1.0], [1.0], participation=2), "participation must be in (0, 1]"),
    ('series of many', lambda: series_backtest(PANEL, [0.5], ['2020-06-01']), "these bars hold 15 symbols"),
    ('momentum', lambda: factor_scores(PANEL, momentum_window=1), "momentum_window must be an integer >= 2"),
    ('spread range', lambda: make_illiquid_panel(spread=(0.01, 1.5)), "spread must be in [0, 1)"),
    ('tradable dtype', lambda: cross_sectional_compare({'m': np.ones(4)}, np.ones(4), pd.bdate_range('2024-01-01', periods=4), tradable=[1, 0, 1, 1], symbols=list('abcd')),
     "tradable must be booleans"),
]


@pytest.mark.parametrize('name, call, message', BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_problem(name, call, message):
    with pytest.raises((ValueError, TypeError)) as e: call()
    assert message in str(e.value), str(e.value)
