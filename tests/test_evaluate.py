"Evaluation: metrics against scikit-learn, interval behaviour, baselines fit on train only, backtest arithmetic and no look-ahead end to end."
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, log_loss, matthews_corrcoef, roc_auc_score

from trading_nb.data import load_sample, make_synthetic
from trading_nb.dataset import chronological_split
from trading_nb.evaluate import (METRICS, backtest, baseline_predictions, block_bootstrap_indices, block_length,
                                 classification_metrics, compare, last_bar_features, paired_difference, tabular_baselines,
                                 verdict)


def _case(seed, n, k, ties=False):
    r = np.random.default_rng(seed)
    y = r.integers(0, k, n)
    p = r.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += r.uniform(0, 0.5)
    if ties: p = np.round(p, 1) + 1e-3
    return y, p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("ties", [False, True])
def test_point_estimates_match_sklearn(seed, k, ties):
    y, p = _case(seed, 300 + 17 * seed, k, ties)
    m = classification_metrics(y, p, n_boot=0)["estimate"]
    pred = p.argmax(1)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(y, pred), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(y, y_proba=p), abs=1e-12)
    auc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr")
    assert m["roc_auc"] == pytest.approx(auc, abs=1e-12)


def test_constant_prediction_mcc_zero_and_extreme_proba_clipped():
    y = np.array([0, 1, 1, 0, 1])
    m = classification_metrics(y, np.ones(5), n_boot=0)["estimate"]   # always up, with certainty
    assert m["mcc"] == matthews_corrcoef(y, np.ones(5, int)) == 0
    assert m["log_loss"] == pytest.approx(log_loss(y, y_proba=np.ones(5)), rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_interval_contains_estimate_and_narrows_with_n(seed):
    widths = []
    for n in (300, 1200, 4800):
        y, p = _case(seed, n, 2)
        m = classification_metrics(y, p, n_boot=400, seed=seed)
        assert ((m.lower <= m.estimate) & (m.estimate <= m.upper)).all()
        widths.append((m.upper - m.lower).to_numpy())
    assert (widths[0] > widths[1]).all() and (widths[1] > widths[2]).all()


def test_bootstrap_is_circular_blocks_and_seeded():
    idx = block_bootstrap_indices(100, n_boot=20, block=10, seed=4)
    assert idx.shape == (20, 100)
    steps = np.diff(idx.reshape(20, 10, 10), axis=2) % 100
    assert (steps == 1).all()
    assert (idx == block_bootstrap_indices(100, n_boot=20, block=10, seed=4)).all()
    assert not (idx == block_bootstrap_indices(100, n_boot=20, block=10, seed=5)).all()
    assert block_length(27) == 3 and block_length(28) == 4 and block_length(28, horizon=5) == 5


@pytest.fixture(scope="module")
def synthetic_split():
    return chronological_split(make_synthetic(2500, seed=3), lookback=20, horizon=1, val_frac=0.15, test_frac=0.2)


def test_baselines_fit_on_train_only(synthetic_split):
    train, _, test = synthetic_split
    a = baseline_predictions(train, test)
    saved = test.targets.clone()
    try:
        test.targets = 1 - saved
        b = baseline_predictions(train, test)
        test.targets = torch.zeros_like(saved)
        c = baseline_predictions(train, test)
    finally:
        test.targets = saved
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k])
    # ... and changing the training labels does change them
    flipped = tabular_baselines(last_bar_features(train), 1 - train.targets.numpy(), last_bar_features(test))
    assert not np.allclose(flipped["logistic"], a["logistic"])


def test_baseline_shapes_and_majority(synthetic_split):
    train, _, test = synthetic_split
    base = baseline_predictions(train, test)
    assert set(base) == {"majority", "previous_move", "logistic", "hist_gbm"}
    for v in base.values():
        assert v.shape == (len(test), 2) and np.allclose(v.sum(1), 1)
    share_up = train.targets.numpy().mean()
    assert np.allclose(base["majority"][:, 1], share_up)
    prev = train.features["ret"].to_numpy()[train.last]
    assert ((base["previous_move"][:, 1] > 0.5) == (test.features["ret"].to_numpy()[test.last] > 0)).all()
    assert prev.shape == (len(train),)


def test_compare_and_verdict(synthetic_split):
    train, _, test = synthetic_split
    base = baseline_predictions(train, test)
    y = test.targets.numpy()
    c = compare(base["logistic"], base, y, n_boot=200)
    assert list(c.index) == ["model", *base]
    # the model slot holds the logistic predictions: same numbers as the logistic row
    np.testing.assert_allclose(c.loc["model"].to_numpy(float), c.loc["logistic"].to_numpy(float))
    d = paired_difference(base["logistic"], base["logistic"], y, n_boot=100)
    assert d["difference"] == d["lower"] == d["upper"] == 0
    assert "cannot tell them apart" in verdict(base["logistic"], {"logistic": base["logistic"]}, y, n_boot=100)
    perfect = np.eye(2)[y] * 0.98 + 0.01
    assert verdict(perfect, base, y, n_boot=200).startswith("The model beats")
    assert "worse" in verdict(1 - perfect, base, y, n_boot=200)
    with pytest.raises(ValueError, match="no baselines"):
        verdict(perfect, {}, y)


def test_backtest_hand_computed():
    d = pd.date_range("2021-03-01", periods=5, freq="B")
    p = [0.55, 0.9, 0.2, 0.3, 0.8]
    r = [0.02, -0.01, 0.01, -0.03, 0.04]
    eq, st = backtest(p, r, d, cost_bps=5, long_short=True)
    # positions 1, 1, -1, -1, 1; changes 1, 0, 2, 0, 2 units at 5 bp each
    np.testing.assert_array_equal(eq.position, [1, 1, -1, -1, 1])
    net = np.array([0.02 - 5e-4, -0.01, -0.01 - 1e-3, 0.03, 0.04 - 1e-3])
    np.testing.assert_allclose(eq.strategy_return, net, atol=1e-15)
    np.testing.assert_allclose(eq.equity, np.cumprod(1 + net), rtol=1e-14)
    s = st["strategy"]
    assert s["sharpe"] == pytest.approx(net.mean() / net.std(ddof=1) * math.sqrt(252))
    assert s["annual_volatility"] == pytest.approx(net.std(ddof=1) * math.sqrt(252))
    assert s["hit_rate"] == pytest.approx(3 / 5)   # wrong on the second (long, down) and third (short, up) day
    assert s["turnover"] == pytest.approx(5 * 252 / 5)
    assert s["exposure"] == 1
    eq_curve = np.cumprod(1 + net)
    assert s["max_drawdown"] == pytest.approx((eq_curve / np.maximum.accumulate(np.r_[1, eq_curve])[1:] - 1).min())
    bh = st["buy_hold"]
    assert bh["total_return"] == pytest.approx((1.02 - 5e-4) * 0.99 * 1.01 * 0.97 * 1.04 - 1)
    # zero costs: the strategy return is position times asset return exactly
    eq0, _ = backtest(p, r, d, cost_bps=0, long_short=True)
    np.testing.assert_allclose(eq0.strategy_return, eq0.position * np.array(r), atol=0)


def test_backtest_horizon_uses_non_overlapping_windows():
    d = pd.date_range("2021-01-01", periods=12, freq="B")
    p = np.linspace(0.1, 0.9, 12)
    r = np.arange(12) / 1000
    eq, st = backtest(p, r, d, horizon=3, cost_bps=0)
    np.testing.assert_array_equal(eq.index, d[[0, 3, 6, 9]])
    np.testing.assert_allclose(eq.asset_return, r[[0, 3, 6, 9]])
    assert eq.attrs["periods_per_year"] == pytest.approx(84)


def test_no_look_ahead_end_to_end():
    """Change every bar from date T on: nothing decided before T changes (features, baselines, positions)."""
    sp = load_sample("sp500").loc[:"2008-12-31"]
    lookback, horizon = 30, 1
    train, _, test = chronological_split(sp, lookback=lookback, horizon=horizon, val_frac=0.1, test_frac=0.15)
    T = test.dates[len(test) // 2]
    changed = sp.copy()
    after = changed.index >= T
    scale = np.exp(np.random.default_rng(0).normal(0, 0.05, after.sum())).cumprod()
    changed.loc[after, ["open", "high", "low", "close"]] = changed.loc[after, ["open", "high", "low", "close"]].mul(scale, axis=0)
    changed.loc[after, "volume"] = changed.loc[after, "volume"][::-1].to_numpy()
    train2, _, test2 = chronological_split(changed, lookback=lookback, horizon=horizon, val_frac=0.1, test_frac=0.15)
    assert test2.dates.equals(test.dates)
    before = np.flatnonzero(test.dates < T)        # windows decided before the first changed bar
    assert len(before) > 100
    b1, b2 = baseline_predictions(train, test), baseline_predictions(train2, test2)
    p1, p2 = b1["hist_gbm"][:, 1], b2["hist_gbm"][:, 1]
    np.testing.assert_array_equal(p1[before], p2[before])
    assert not np.array_equal(p1, p2)              # the change did reach the later windows
    e1, _ = backtest(p1, test.future_returns, test.dates)
    e2, _ = backtest(p2, test2.future_returns, test2.dates)
    np.testing.assert_array_equal(e1.position.to_numpy()[before], e2.position.to_numpy()[before])
    # the period decided at the last bar before T earns the (changed) return into T, so equity agrees one window less
    np.testing.assert_array_equal(e1.equity.to_numpy()[before[:-1]], e2.equity.to_numpy()[before[:-1]])


BAD_BACKTEST = [
    (dict(proba_up=[0.5, 0.6, 0.7]), "one entry per window"),
    (dict(proba_up=[0.5, -0.1]), "probabilities in [0, 1]"),
    (dict(future_returns=[0.01, -1.5]), "above -100%"),
    (dict(future_returns=[0.01, np.inf]), "must be finite"),
    (dict(dates=pd.DatetimeIndex(["2020-01-02", "2020-01-02"])), "strictly increasing"),
    (dict(threshold=1.0), "threshold must be in [0.5, 1)"),
    (dict(cost_bps=-0.5), "cost_bps must be >= 0"),
    (dict(horizon=2.5), "horizon must be a positive integer"),
    (dict(proba_up=[[0.5, 0.6], [0.1, 0.9]]), "sum to 1"),
]


@pytest.mark.parametrize("change, message", BAD_BACKTEST)
def test_backtest_bad_input(change, message):
    args = dict(proba_up=[0.5, 0.6], future_returns=[0.01, 0.02], dates=pd.date_range("2020-01-01", periods=2))
    args.update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        backtest(**args)


BAD_METRICS = [
    ([0, 1], [[0.7, 0.7], [0.2, 0.8]], "sums to 1.4"),
    ([0, 1], [[3.0, -2.0], [0.2, 0.8]], "not logits"),
    ([0, 1, 2], [0.2, 0.8, 0.4], "labels must be in 0..1"),
    ([[0, 1]], [0.2, 0.8], "y_true must be 1-D"),
    (["a", "b"], [0.2, 0.8], "integer class labels"),
    ([0, 1], [0.2, 0.8, 0.5], "proba has 3 rows but there are 2 labels"),
    ([0, 1], np.zeros((2, 2, 2)), "proba must be (n,) or (n, n_classes >= 2)"),
]


@pytest.mark.parametrize("y, p, message", BAD_METRICS)
def test_metrics_bad_input(y, p, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classification_metrics(y, p)


def test_metric_names_are_the_contract():
    assert METRICS == ("accuracy", "balanced_accuracy", "roc_auc", "mcc", "log_loss")
