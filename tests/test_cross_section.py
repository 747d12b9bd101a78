"Cross-sectional evaluation: the bad-input matrix, row-order invariance and no look-ahead by perturbation"
import numpy as np
import pandas as pd
import pytest

from trading_nb.cross_section import (PORTFOLIOS, cross_sectional_compare, cross_sectional_verdict, daily_ic, ic_summary,
                                      paired_ic_difference, per_symbol_metrics, portfolio_backtest, quantile_returns)
from trading_nb.evaluate import backtest


def ragged_panel(n_names=12, n_dates=60, seed=0, b=0.2):
    "A long frame with a planted signal whose names trade on different calendars (each misses some dates)"
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range('2021-01-04', periods=n_dates)
    sym, day = np.meshgrid([f"N{i:02d}" for i in range(n_names)], dates, indexing='ij')
    df = pd.DataFrame(dict(symbol=sym.ravel(), date=day.ravel()))
    df['score'] = rng.standard_normal(len(df))
    df['ret'] = 0.01 * (b * df.score + rng.standard_normal(len(df)))
    return df[rng.uniform(size=len(df)) > 0.15].reset_index(drop=True)   # about 15% of (name, date) missing


P = ragged_panel()
S, R, D, Y = P.score.to_numpy(), P.ret.to_numpy(), P.date.to_numpy(), P.symbol.to_numpy()


def with_nan(a, i=7):
    a = np.array(a, dtype='float64'); a[i] = np.nan; return a


# (name, call with bad input, what the message must say)
BAD = [
    ("ic: scores shorter", lambda: daily_ic(S[:-1], R, D), "one entry per window"),
    ("ic: dates shorter", lambda: daily_ic(S, R, D[:-1]), "one entry per window"),
    ("ic: symbols shorter", lambda: daily_ic(S, R, D, symbols=Y[:-1]), "one entry per window"),
    ("ic: NaN score", lambda: daily_ic(with_nan(S), R, D, symbols=Y), f"scores has NaN or inf at position 7 (date {pd.Timestamp(D[7]).date()}, symbol {Y[7]})"),
    ("ic: inf return", lambda: daily_ic(S, np.where(np.arange(len(R)) == 3, np.inf, R), D), "returns has NaN or inf at position 3"),
    ("ic: missing date", lambda: daily_ic(S, R, pd.DatetimeIndex(D).insert(5, pd.NaT)[:-1]), "dates has a missing value at position 5"),
    ("ic: duplicate (symbol, date)", lambda: daily_ic(np.r_[S, S[:1]], np.r_[R, R[:1]], np.r_[D, D[:1]], symbols=np.r_[Y, Y[:1]]), "(symbol, date) appears twice"),
    ("ic: 2-D scores", lambda: daily_ic(np.c_[S, S], R, D), "scores must be 1-D"),
    ("ic: empty", lambda: daily_ic([], [], []), "no windows given"),
    ("ic: text scores", lambda: daily_ic(['a'] * len(R), R, D), "could not convert string to float"),
    ("ic: min_names", lambda: daily_ic(S, R, D, min_names=1), "min_names must be an integer >= 2"),
    ("summary: horizon", lambda: ic_summary(daily_ic(S, R, D), horizon=0), "horizon must be a positive integer"),
    ("summary: ci", lambda: ic_summary(daily_ic(S, R, D), ci=95), "ci must be in (0, 1)"),
    ("summary: not an IC frame", lambda: ic_summary(pd.DataFrame(dict(ic=[0.1, 0.2]))), "lacks ['rank_ic']"),
    ("quantiles: NaN score", lambda: quantile_returns(with_nan(S), R, D), "scores has NaN or inf at position 7"),
    ("quantiles: n_quantiles", lambda: quantile_returns(S, R, D, n_quantiles=1), "n_quantiles must be an integer >= 2"),
    ("portfolio: no symbols", lambda: portfolio_backtest(S, R, D), "portfolio_backtest needs symbols="),
    ("portfolio: length", lambda: portfolio_backtest(S, R[:-1], D, symbols=Y), "one entry per window"),
    ("portfolio: NaN return", lambda: portfolio_backtest(S, with_nan(R, 2), D, symbols=Y), "returns has NaN or inf at position 2"),
    ("portfolio: duplicate", lambda: portfolio_backtest(S, R, D, symbols=np.where(Y == 'N01', 'N00', Y)), "(symbol, date) appears twice"),
    ("portfolio: top_k", lambda: portfolio_backtest(S, R, D, top_k=0, symbols=Y), "top_k must be an integer >= 1 or None"),
    ("portfolio: horizon", lambda: portfolio_backtest(S, R, D, horizon=True, symbols=Y), "horizon must be an integer >= 1"),
    ("portfolio: cost", lambda: portfolio_backtest(S, R, D, cost_bps=np.nan, symbols=Y), "cost_bps must be >= 0"),
    ("portfolio: one date", lambda: portfolio_backtest([1., 2.], [0.1, 0.2], ['2024-01-02'] * 2, symbols=['A', 'B']), "at least 2 dates"),
    ("compare: not a dict", lambda: cross_sectional_compare(S, R, D, symbols=Y), "scores must be a non-empty dict"),
    ("compare: one bad predictor", lambda: cross_sectional_compare(dict(model=S, bad=with_nan(S)), R, D, symbols=Y), "scores has NaN or inf"),
    ("difference: column", lambda: paired_ic_difference(S, -S, R, D, column='auc'), "column must be 'ic' or 'rank_ic'"),
    ("verdict: no model", lambda: cross_sectional_verdict(dict(a=S, b=-S), R, D), "no 'model' in scores"),
    ("verdict: no baselines", lambda: cross_sectional_verdict(dict(model=S), R, D), "no baselines"),
    ("per symbol: symbols shorter", lambda: per_symbol_metrics(np.full(4, 0.6), [1, 0, 1, 1], ['A'] * 3), "symbols must have one entry per window"),
    ("per symbol: logits", lambda: per_symbol_metrics([2.0, -1.0], [1, 0], ['A', 'B']), "not logits"),
    ("per symbol: labels", lambda: per_symbol_metrics([0.6, 0.4], [1, 2], ['A', 'B']), "labels must be in 0..1"),
]


@pytest.mark.parametrize("call,message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(ValueError) as e: call()
    assert message in str(e.value), str(e.value)


def test_row_order_does_not_matter():
    "Unsorted rows are fine: every function groups by date, so a shuffled panel gives identical numbers"
    q = P.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(daily_ic(q.score, q.ret, q.date, symbols=q.symbol), daily_ic(S, R, D, symbols=Y))
    pd.testing.assert_frame_equal(quantile_returns(q.score, q.ret, q.date), quantile_returns(S, R, D))
    for h in (1, 3):
        a, sa = portfolio_backtest(q.score, q.ret, q.date, horizon=h, symbols=q.symbol)
        b, sb = portfolio_backtest(S, R, D, horizon=h, symbols=Y)
        pd.testing.assert_frame_equal(a, b)
        assert sa == sb


def test_dropped_dates_are_counted():
    "A date with too few names, or constant scores or returns, is left out and counted, never silently"
    d = ['2024-01-02'] * 2 + ['2024-01-03'] * 3 + ['2024-01-04'] * 3 + ['2024-01-05'] * 3
    f = daily_ic([1, 2, 5, 5, 5, 1, 2, 3, 1, 2, 3], [1, 2, 1, 2, 3, 4, 4, 4, 1, 3, 2], d)
    assert f.attrs['dropped'] == dict(few_names=1, constant_scores=1, constant_returns=1)
    assert list(f.index.strftime('%Y-%m-%d')) == ['2024-01-05'] and f.attrs['n_dates_total'] == 4


@pytest.mark.parametrize("horizon", [1, 3])
def test_portfolio_no_look_ahead(horizon):
    "Perturbing returns or scores from a date on leaves every book's equity before that date unchanged"
    rng = np.random.default_rng(horizon)
    base, _ = portfolio_backtest(S, R, D, horizon=horizon, symbols=Y)
    days = base.index
    for t in (1, len(days) // 2, len(days) - 1):
        later = pd.DatetimeIndex(D) >= days[t]
        r2 = R.copy(); r2[later] = rng.normal(1.0, 0.5, later.sum())
        s2 = S.copy(); s2[later] = rng.permutation(s2[later])
        for sc, rt in ((S, r2), (s2, R)):
            e, _ = portfolio_backtest(sc, rt, D, horizon=horizon, symbols=Y)
            assert e.index.equals(days)
            for name in PORTFOLIOS:
                np.testing.assert_array_equal(e[name].to_numpy()[:t], base[name].to_numpy()[:t])
                np.testing.assert_array_equal(e[f'{name}_turnover'].to_numpy()[:t], base[f'{name}_turnover'].to_numpy()[:t])
        # and the perturbation is not a no-op: the book or return from t on changes
        e, _ = portfolio_backtest(S, r2, D, horizon=horizon, symbols=Y)
        assert not np.array_equal(e.long_short.to_numpy()[t:], base.long_short.to_numpy()[t:])


def test_daily_ic_and_quantiles_no_look_ahead():
    "A date's IC and quantile returns use that date's rows only: changing later rows leaves earlier dates unchanged"
    cut = pd.DatetimeIndex(D) >= pd.Timestamp('2021-02-15')
    r2, s2 = R.copy(), S.copy()
    r2[cut], s2[cut] = -R[cut], S[cut] ** 2
    for f in (daily_ic, quantile_returns):
        a, b = f(S, R, D), f(s2, r2, D)
        early = a.index < pd.Timestamp('2021-02-15')
        pd.testing.assert_frame_equal(a[early], b[early])
        assert not a[~early].equals(b[~early])


def test_one_symbol_panel():
    "A panel of one symbol: no cross-section (every date left out of the IC, the long-short flat), and the equal-weight book is buy-and-hold"
    one = P[P.symbol == 'N00']
    f = daily_ic(one.score, one.ret, one.date)
    assert len(f) == 0 and f.attrs['dropped']['few_names'] == len(one)
    eq, st = portfolio_backtest(one.score, one.ret, one.date, symbols=one.symbol, cost_bps=5)
    assert (eq.long_short_return == 0).all() and (eq.k == 0).all() and eq.attrs['flat_dates'] == len(one)
    ref, ref_st = backtest(np.full(len(one), 0.6), one.ret, one.date, cost_bps=5)
    np.testing.assert_allclose(eq.equal_weight_return.to_numpy(), ref.buy_hold_return.to_numpy(), rtol=0, atol=1e-15)
    assert abs(st['equal_weight']['sharpe'] - ref_st['buy_hold']['sharpe']) < 1e-9


def test_names_entering_and_leaving_pay_costs():
    "The turnover follows names: a missing name leaves the book and re-enters, and costs are exactly turnover x cost"
    eq, _ = portfolio_backtest(S, R, D, cost_bps=7, symbols=Y)
    for name in PORTFOLIOS:
        np.testing.assert_allclose(eq[f'{name}_gross'] - eq[f'{name}_return'], eq[f'{name}_turnover'] * 7e-4, rtol=0, atol=1e-15)
    n = eq.n.to_numpy()
    assert (eq.equal_weight_turnover.to_numpy()[1:][n[1:] != n[:-1]] > 0).all()   # the universe changed: the equal-weight book traded
    np.testing.assert_allclose(eq.long_short_gross.to_numpy() @ np.ones(len(eq)),
                               portfolio_backtest(S, R, D, cost_bps=0, symbols=Y)[0].long_short_return.sum(), atol=1e-12)
