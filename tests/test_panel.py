"Panels end to end: leakage across symbols and time, splits by date, a panel of one symbol, a planted cross-sectional signal learned"
import warnings
import numpy as np
import pandas as pd
import pytest
import torch
from trading_nb.data import load_sample, make_synthetic_panel
from trading_nb.dataset import TradingDataset, batches, changed_windows, chronological_split, walk_forward

warnings.filterwarnings('ignore', message="symbol 'FB' left out")

@pytest.fixture(scope='module')
def panel(): return make_synthetic_panel(5, 520, seed=11)

@pytest.fixture(scope='module')
def stocks(): return load_sample('stocks', on_invalid='drop')

def _shock(panel, symbols=None, after=None, seed=0):
    "A copy with every bar of `symbols` (all when None) after `after` (all when None) scaled by random factors"
    rng = np.random.default_rng(seed)
    out = panel.copy()
    sym = out.index.get_level_values('symbol')
    date = out.index.get_level_values('date')
    m = np.ones(len(out), bool)
    if symbols is not None: m &= np.isin(sym, symbols)
    if after is not None: m &= date > pd.Timestamp(after)
    f = np.exp(rng.normal(0, 0.05, m.sum()))
    out.loc[m, ['open', 'high', 'low', 'close']] = out.loc[m, ['open', 'high', 'low', 'close']].to_numpy() * f[:, None]
    out.loc[m, 'volume'] = out.loc[m, 'volume'].to_numpy() * 2
    return out

def test_changing_one_symbol_changes_no_window_of_another(panel):
    a = TradingDataset(panel, lookback=30)
    b = TradingDataset(_shock(panel, ['S002']), lookback=30, scaler=a.scaler)
    touched = changed_windows(a, b)
    assert len(touched) > 0
    assert set(a.symbols[touched]) == {'S002'}
    other = torch.as_tensor(np.flatnonzero(a.symbols != 'S002'))
    assert torch.equal(a.windows[other], b.windows[other])
    assert torch.equal(a.targets[other], b.targets[other])

@pytest.mark.parametrize('after', ['2001-03-01', '2001-09-03'])
def test_changing_the_future_changes_nothing_before_it_for_every_symbol(panel, after):
    a = TradingDataset(panel, lookback=30)
    b = TradingDataset(_shock(panel, after=after), lookback=30, scaler=a.scaler)
    before = torch.as_tensor(np.flatnonzero(a.dates <= pd.Timestamp(after)))
    assert len(before) and set(a.symbols[before.numpy()]) == set(panel.index.unique('symbol'))
    assert torch.equal(a.windows[before], b.windows[before])
    # the targets of windows whose horizon ends by then are unchanged too
    done = torch.as_tensor(np.flatnonzero(a.dates < pd.Timestamp(after) - pd.Timedelta('5D')))
    assert torch.equal(a.targets[done], b.targets[done])
    assert len(changed_windows(a, b)) > 0

def test_split_dates_follow_each_other_for_every_symbol(stocks):
    tr, va, te = chronological_split(stocks, lookback=60, target='excess')
    assert te.dates.min() > va.dates.max() > tr.dates.min() and va.dates.min() > tr.dates.max()
    for s in set(te.symbols):
        d_tr, d_te = tr.dates[tr.symbols == s], te.dates[te.symbols == s]
        if len(d_tr) and len(d_te): assert d_te.min() > d_tr.max()
    # the scaler is fitted on training rows only: changing the test period leaves it (and the training windows) unchanged
    cut = te.dates.min()
    tr2, _, te2 = chronological_split(_shock(stocks, after=cut), lookback=60, target='excess')
    assert tr2.scaler == tr.scaler and torch.equal(tr2.windows[:1000], tr.windows[:1000])
    assert not torch.equal(te2.targets, te.targets) or not torch.equal(te2.windows[:100], te.windows[:100])

def test_walk_forward_on_a_panel(panel):
    folds = list(walk_forward(panel, n_folds=3, lookback=20, target='excess'))
    assert len(folds) == 3
    for tr, te in folds:
        assert te.dates.min() > tr.dates.max()
        assert set(te.symbols) == set(panel.index.unique('symbol'))
        assert te.scaler == tr.scaler

def test_a_panel_of_one_symbol_is_the_series(stocks):
    series = stocks.loc['IBM']
    one = stocks.loc[['IBM']]
    a, b = TradingDataset(series, lookback=50), TradingDataset(one, lookback=50)
    assert torch.equal(a.windows, b.windows[torch.arange(len(b))]) and torch.equal(a.targets, b.targets)
    assert a.scaler == b.scaler and (a.dates == b.dates).all() and np.array_equal(a.future_returns, b.future_returns)
    for pa, pb in zip(chronological_split(series, lookback=50), chronological_split(one, lookback=50)):
        assert torch.equal(pa.windows, pb.windows[torch.arange(len(pb))]) and torch.equal(pa.targets, pb.targets)
        assert pa.scaler == pb.scaler and (pa.dates == pb.dates).all()
        assert torch.equal(next(iter(batches(pa, 256)))['sequence'], next(iter(batches(pb, 256)))['sequence'])

def test_excess_needs_a_cross_section(stocks):
    with pytest.raises(ValueError, match="target='excess' needs a panel"): TradingDataset(stocks.loc['IBM'], target='excess')
    ds = TradingDataset(stocks, lookback=50, target='excess')
    assert ds.single_name_windows > 0   # AMZN's early years, alone on their dates
    per_date = pd.Series(ds.target_returns).groupby(ds.dates).agg(['mean', 'size'])
    assert per_date['size'].min() >= 2 and per_date['mean'].abs().max() < 1e-12

# The planted cross-sectional signal (a synthetic panel whose next excess return leans on its last 5 returns) is learned in
# nbs/06b_panel_study.ipynb, under nbdev_test: the model reaches about 95% of the ideal rule's rank IC there.
