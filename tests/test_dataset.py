"Leakage, split, target and bad-input checks for `trading_nb.dataset` beyond the notebook's"
import numpy as np
import pandas as pd
import pytest
import torch
from trading_nb.data import DataError, make_synthetic
from trading_nb.dataset import (TradingDataset, batches, changed_windows, chronological_split, collate_batch,
                                direction_classes, walk_forward)
from trading_nb.features import feature_columns, make_features, normalize_features, warmup_bars

WARM = warmup_bars()

@pytest.fixture(scope='module')
def bars():
    return make_synthetic(WARM + 700, seed=3)

@pytest.fixture(scope='module')
def scaler(bars):
    return normalize_features(make_features(bars))[1]

def shocked(bars, t, seed=0):
    "Bars changed from row `t` on (prices scaled per bar, so each bar stays valid; volume tripled)"
    out = bars.copy()
    out.iloc[t:, :4] *= np.exp(np.random.default_rng(seed).normal(0, 0.05, (len(bars) - t, 1)))
    out.iloc[t:, 4] *= 3
    return out

@pytest.mark.parametrize('lookback,horizon', [(1, 1), (20, 1), (50, 5), (100, 10)])
@pytest.mark.parametrize('task,flat_band', [('classification', 0.0), ('classification', 0.003), ('regression', 0.0)])
def test_shapes_dtypes(bars, lookback, horizon, task, flat_band):
    ds = TradingDataset(bars, lookback=lookback, horizon=horizon, task=task, flat_band=flat_band)
    cols = feature_columns()
    n_rows = len(bars) - WARM
    assert len(ds) == n_rows - lookback - horizon + 1
    assert ds.n_channels == len(cols['price']) + len(cols['technical']) and ds.n_indicators == len(cols['technical'])
    it = ds[len(ds) // 2]
    assert it['sequence'].shape == (lookback, ds.n_channels) and it['sequence'].dtype == torch.float32
    assert it['indicators'].shape == (ds.n_indicators,) and it['indicators'].dtype == torch.float32
    assert it['target'].dtype == (torch.float32 if task == 'regression' else torch.int64)
    b = ds.__getitems__([0, 5, len(ds) - 1])
    assert b['sequence'].shape == (3, lookback, ds.n_channels) and b['indicators'].shape == (3, ds.n_indicators)
    assert b['target'].shape == (3,)
    for k in b: assert torch.equal(b[k][1], ds[5][k])
    assert len(ds.dates) == len(ds.closes) == len(ds.future_returns) == len(ds.targets) == len(ds)
    assert isinstance(ds.dates, pd.DatetimeIndex) and isinstance(ds.scaler['mean'][0], float)
    assert ds.output_dim == (1 if task == 'regression' else 3 if flat_band else 2)
    assert not any(torch.isnan(v).any() for v in b.values())

@pytest.mark.parametrize('horizon', [1, 5])
@pytest.mark.parametrize('t', [WARM + 150, WARM + 400, WARM + 699])
def test_no_look_ahead(bars, scaler, t, horizon):
    a = TradingDataset(bars, lookback=60, horizon=horizon, scaler=scaler)
    b = TradingDataset(shocked(bars, t), lookback=60, horizon=horizon, scaler=scaler)
    before = np.flatnonzero(a.dates < bars.index[t])
    assert len(before) > 0
    assert torch.equal(a.windows[before], b.windows[before])
    assert torch.equal(a.__getitems__(before)['indicators'], b.__getitems__(before)['indicators'])
    changed = changed_windows(a, b)
    assert len(changed) == 0 or a.dates[changed[0]] >= bars.index[t]
    settled = np.flatnonzero(a.dates < bars.index[t - horizon])
    assert torch.equal(a.targets[settled], b.targets[settled])
    np.testing.assert_array_equal(a.future_returns[settled], b.future_returns[settled])

@pytest.mark.parametrize('horizon,flat_band', [(1, 0.0), (3, 0.0), (2, 0.004)])
def test_targets_match_closes(bars, horizon, flat_band):
    ds = TradingDataset(bars, lookback=30, horizon=horizon, flat_band=flat_band)
    close = bars.close
    pos = close.index.get_indexer(ds.dates)
    np.testing.assert_array_equal(ds.closes, close.to_numpy()[pos])
    r = close.to_numpy()[pos + horizon] / close.to_numpy()[pos] - 1
    np.testing.assert_allclose(ds.future_returns, r, rtol=0, atol=1e-15)
    expect = (r > 0).astype(int) if not flat_band else np.select([r < -flat_band, r > flat_band], [0, 2], 1)
    np.testing.assert_array_equal(ds.targets.numpy(), expect)
    assert pos[-1] + horizon == len(close) - 1          # the last window's target is the last bar: none beyond the data
    bal = ds.class_balance()
    assert bal['count'].sum() == len(ds) and abs(bal['share'].sum() - 1) < 1e-12
    print(f"horizon {horizon}, flat_band {flat_band}: class shares {dict(bal['share'].round(3))}")

def test_regression_targets(bars):
    ds = TradingDataset(bars, lookback=30, horizon=4, task='regression')
    np.testing.assert_allclose(ds.targets.numpy(), ds.future_returns.astype(np.float32))
    with pytest.raises(ValueError, match='for classification'): ds.class_balance()

def test_feature_frame_matches_bars(bars):
    feats = make_features(bars)
    a = TradingDataset(bars, lookback=40, horizon=2)
    b = TradingDataset(feats, lookback=40, horizon=2, close=bars.close.reindex(feats.index))
    c = TradingDataset(feats.assign(close=bars.close), lookback=40, horizon=2)
    for other in (b, c):
        assert torch.equal(a.windows, other.windows) and torch.equal(a.targets, other.targets)
        assert a.scaler == other.scaler and a.dates.equals(other.dates)

@pytest.mark.parametrize('lookback,horizon,val_frac,test_frac,gap', [
    (100, 1, 0.15, 0.15, 0), (30, 5, 0.2, 0.1, 0), (60, 3, 0.15, 0.15, 7), (20, 1, 0.0, 0.2, 0), (20, 1, 0.2, 0.0, 3)])
def test_split_gap_and_scaler(bars, lookback, horizon, val_frac, test_frac, gap):
    parts = chronological_split(bars, lookback=lookback, horizon=horizon, val_frac=val_frac, test_frac=test_frac, gap=gap)
    rows = make_features(bars).index
    kept = [p for p in parts if p is not None]
    assert (parts[1] is None) == (val_frac == 0) and (parts[2] is None) == (test_frac == 0)
    for earlier, later in zip(kept, kept[1:]):
        last_end, first_end = rows.get_loc(earlier.dates[-1]), rows.get_loc(later.dates[0])
        assert first_end - last_end >= lookback + horizon + gap
        assert first_end - lookback + 1 > last_end + horizon       # no later input on an earlier target
        assert later.scaler == kept[0].scaler
    train = parts[0]
    assert train.scaler == normalize_features(train.features)[1]

def test_scaler_sees_training_bars_only(bars):
    train, val, test = chronological_split(bars, lookback=50)
    t = make_features(bars).index.get_loc(val.dates[0]) - 50 + 1 + WARM   # first bar the validation windows read
    train2, val2, _ = chronological_split(shocked(bars, t), lookback=50)
    assert train2.scaler == train.scaler and torch.equal(train2.windows, train.windows)
    assert torch.equal(train2.targets, train.targets)
    assert not torch.equal(val2.windows, val.windows)

@pytest.mark.parametrize('expanding', [True, False])
def test_walk_forward(bars, expanding):
    folds = list(walk_forward(bars, n_folds=3, lookback=40, horizon=2, expanding=expanding, gap=5))
    rows = make_features(bars).index
    assert len(folds) == 3
    for tr, te in folds:
        assert rows.get_loc(te.dates[0]) - rows.get_loc(tr.dates[-1]) >= 40 + 2 + 5
        assert te.scaler == tr.scaler == normalize_features(tr.features)[1]
    tests = [te for _, te in folds]
    for a, b in zip(tests, tests[1:]): assert a.dates[-1] < b.dates[0]
    starts = {tr.dates[0] for tr, _ in folds}
    sizes = [len(tr) for tr, _ in folds]
    if expanding: assert len(starts) == 1 and sizes == sorted(sizes) and sizes[0] < sizes[-1]
    else: assert len(set(sizes)) == 1 and len(starts) == 3

def test_batches_and_dataloader(bars):
    ds = TradingDataset(bars, lookback=30)
    ordered = list(batches(ds, batch_size=50))
    dl = list(torch.utils.data.DataLoader(ds, batch_size=50, collate_fn=collate_batch))
    assert len(ordered) == len(dl) == -(-len(ds) // 50)
    for a, b in zip(ordered, dl):
        for k in a: assert torch.equal(a[k], b[k])
    bs = batches(ds, batch_size=64, shuffle=True, seed=1, drop_last=True)
    e1, e2 = list(bs), list(bs)
    assert len(e1) == len(bs) == len(ds) // 64 and all(len(b['target']) == 64 for b in e1)
    assert not torch.equal(e1[0]['sequence'], e2[0]['sequence'])
    again = list(batches(ds, batch_size=64, shuffle=True, seed=1, drop_last=True))
    assert all(torch.equal(a['sequence'], b['sequence']) for a, b in zip(e1, again))
    # every window exactly once per pass: match windows by their last-bar indicators, which are distinct
    full = list(batches(ds, batch_size=64, shuffle=True, seed=2))
    got = torch.cat([b['indicators'] for b in full])
    assert got.shape == ds._ind.shape and torch.equal(got.unique(dim=0), ds._ind.unique(dim=0))
    # off the CPU the matrix moves once and batches are gathered there ('meta' stands in for a GPU)
    m = next(iter(batches(ds, batch_size=8, device='meta')))
    assert m['sequence'].device.type == 'meta' and m['sequence'].shape == (8, 30, ds.n_channels)

def test_dataloader_workers(bars):
    ds = TradingDataset(bars, lookback=30)
    dl = torch.utils.data.DataLoader(ds, batch_size=64, collate_fn=collate_batch, num_workers=1)
    got = torch.cat([b['target'] for b in dl])
    assert torch.equal(got, ds.targets)

def test_bad_input(bars):
    n_need = WARM + 100 + 1
    with pytest.raises(DataError, match=f"{n_need - 1} bars, but at least {n_need} are needed"): TradingDataset(bars.iloc[:n_need - 1])
    assert len(TradingDataset(bars.iloc[:n_need])) == 1                       # exactly enough: one window
    with pytest.raises(ValueError, match='lookback must be >= 1'): TradingDataset(bars, lookback=0)
    with pytest.raises(ValueError, match='horizon must be >= 1'): TradingDataset(bars, horizon=-2)
    with pytest.raises(TypeError, match='lookback must be an integer'): TradingDataset(bars, lookback=2.0)
    with pytest.raises(TypeError, match='horizon must be an integer'): TradingDataset(bars, horizon=True)
    with pytest.raises(ValueError, match='task must be one of'): TradingDataset(bars, task='direction')
    with pytest.raises(ValueError, match='flat_band must be >= 0'): TradingDataset(bars, flat_band=-0.1)
    with pytest.raises(TypeError, match='unexpected keyword'): TradingDataset(bars, lookbak=10)
    with pytest.raises(DataError, match='expected a DataFrame'): TradingDataset(bars.close)
    with pytest.raises(DataError, match='has NaN'): TradingDataset(bars.assign(close=bars.close.where(bars.index != bars.index[500])))
    feats = make_features(bars)
    with pytest.raises(DataError, match='needs closes'): TradingDataset(feats)
    with pytest.raises(DataError, match='indexed like the feature frame'): TradingDataset(feats, close=bars.close)
    with pytest.raises(DataError, match="is not finite"): TradingDataset(feats.assign(close=bars.close).replace({feats.iloc[10, 3]: np.inf}))
    with pytest.raises(ValueError, match='only for a feature frame'): TradingDataset(bars, close=bars.close)
    ds = TradingDataset(bars, lookback=30)
    with pytest.raises(IndexError, match='out of range'): ds[len(ds)]
    with pytest.raises(IndexError, match='out of range'): ds[-len(ds) - 1]
    with pytest.raises(TypeError, match='index must be an integer'): ds[[1, 2]]
    with pytest.raises(IndexError, match='out of range'): ds.__getitems__([0, len(ds)])
    with pytest.raises(ValueError, match='val_frac must be in'): chronological_split(bars, val_frac=1.2)
    with pytest.raises(DataError, match='the validation part has'): chronological_split(bars, lookback=100, val_frac=0.05)
    with pytest.raises(ValueError, match='gap must be >= 0'): chronological_split(bars, gap=-1)
    with pytest.raises(DataError, match='use fewer folds'): walk_forward(bars, n_folds=10)
    with pytest.raises(ValueError, match='batch_size must be >= 1'): batches(ds, batch_size=0)
    with pytest.raises(ValueError, match='flat_band must be >= 0'): direction_classes([0.1], -1)

def test_indicator_sets_and_scalers(bars):
    spec = [dict(kind='rsi', length=14)]
    ds = TradingDataset(bars, lookback=30, indicators=spec)
    assert ds.indicators == spec and ds.indicator_names == feature_columns(spec)['technical']
    assert ds.n_indicators == len(feature_columns(spec)['technical']) and len(ds) == len(bars) - warmup_bars(spec) - 30
    with pytest.raises(ValueError, match='do not match the scaler'): TradingDataset(bars, lookback=30, scaler=ds.scaler)
