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


# Cross-sectional normalisation (features.cross_section): one date's rows only, the same in training, predict and the panel stream

from scipy.stats import rankdata
from trading_nb.data import DataError
from trading_nb.features import warmup_bars
from trading_nb.panel import cross_section_normalize, panel_features

@pytest.fixture(scope='module')
def ragged():
    "What real panels have: a late listing (S001), a symbol too short for a 20-bar window that still counts on its dates (S003), a missing day (S004)"
    p = make_synthetic_panel(5, 560, seed=21)
    parts = {s: g.droplevel('symbol') for s, g in p.groupby(level='symbol')}
    parts['S001'] = parts['S001'].iloc[80:]
    parts['S003'] = parts['S003'].iloc[-(warmup_bars() + 15):]
    parts['S004'] = parts['S004'].drop(parts['S004'].index[400])
    return pd.concat(parts, names=['symbol', 'date']).sort_index()

def _dates(frame): return frame.index.get_level_values('date')

def test_zscore_and_rank_per_date(ragged):
    feats, _ = panel_features(ragged)
    sym = feats.index.get_level_values('symbol')
    pos = np.unique(_dates(feats), return_inverse=True)[1]
    feats = feats[(pos >= 20) | (sym == 'S000') | ((pos >= 10) & (sym == 'S002'))]   # 10 dates of one name, 10 of two
    n = feats.groupby(level='date').size()
    assert n.min() == 1 and n.max() == 5 and (n == 2).sum() == 10
    z = cross_section_normalize(feats, 'zscore')
    g = z.groupby(level='date')
    assert g.mean()[n >= 2].abs().to_numpy().max() < 1e-12
    sd = g.std(ddof=0)[n >= 2].to_numpy()
    assert np.all((np.abs(sd - 1) < 1e-9) | (sd == 0))                       # 1, or 0 for a column flat across the names that date
    assert (z[_dates(z).isin(n.index[n == 1])] == 0).all().all()             # one listed name: 0
    two = n.index[n == 2]
    assert np.allclose(np.abs(z[_dates(z).isin(two)]).to_numpy()[:, :3], 1)   # two names: -1 and +1
    # ranks with ties: integer-valued features, compared with scipy's average ranks, date by date
    ints = pd.DataFrame(np.random.default_rng(0).integers(0, 3, feats.shape).astype(float), index=feats.index, columns=feats.columns)
    r = cross_section_normalize(ints, 'rank')
    for d, rows in ints.groupby(level='date'):
        k = len(rows)
        want = np.zeros(rows.shape) if k == 1 else (rankdata(rows.to_numpy(), axis=0) - 1) / (k - 1) - 0.5
        assert np.array_equal(r.loc[rows.index].to_numpy(), want), d

@pytest.mark.parametrize('method', ['zscore', 'rank'])
def test_a_changed_bar_moves_only_the_dates_it_touches(ragged, method):
    "One bar of S002 changed: the normalised rows of every symbol change exactly on the dates where S002's own features changed"
    t = _dates(ragged).unique()[450]
    shocked = ragged.copy()
    shocked.loc[('S002', t), ['open', 'high', 'low', 'close']] *= 1.05
    raw_a, raw_b = panel_features(ragged)[0], panel_features(shocked)[0]
    own = raw_a.loc['S002'].index[(raw_a.loc['S002'] != raw_b.loc['S002']).any(axis=1).to_numpy()]
    assert own.min() == t and len(own) > 1                                   # the indicators carry the change forward
    a, b = TradingDataset(ragged, lookback=20, cross_section=method), TradingDataset(shocked, lookback=20, cross_section=method)
    moved = (a.features != b.features).any(axis=1)
    assert set(_dates(a.features)[moved.to_numpy()]) <= set(own)               # nothing moves on another date
    others = moved.to_numpy() & (a.features.index.get_level_values('symbol') != 'S002')
    assert others.any()                                                      # the others' values are measured against S002's
    # with the training scaler fixed, the windows touched are those that contain one of those dates
    b2 = TradingDataset(shocked, lookback=20, cross_section=method, scaler=a.scaler)
    touched = changed_windows(a, b2)
    assert len(touched) and a.dates[touched].min() >= t

def _model(train, path, seed=0):
    from trading_nb.inference import export_model
    from trading_nb.model import ModelConfig, TradingModel
    torch.manual_seed(seed)
    m = TradingModel(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=2, lookback=train.lookback,
                                 conv_channels=8, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=8)).eval()
    return export_model(m, path, train)

@pytest.fixture(scope='module')
def cs_models(ragged, tmp_path_factory):
    from trading_nb.inference import setup_inference
    d = tmp_path_factory.mktemp('cs')
    out = {}
    for method in ('zscore', 'rank'):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            tr, _, _ = chronological_split(ragged, lookback=20, target='excess', cross_section=method)
        out[method] = setup_inference(_model(tr, d / f'{method}.pt'), device='cpu')
    return out

@pytest.mark.parametrize('method', ['zscore', 'rank'])
def test_panel_stream_equals_predict(ragged, cs_models, method):
    from trading_nb.inference import predict, replay
    im = cs_models[method]
    assert im.manifest['cross_section'] == im.cross_section == method      # the model carries it: nobody passes it again
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        b = predict(im, ragged)
    r = replay(im, ragged)
    assert r.index.equals(b.index) and r.attrs['rejected'] == []
    assert np.abs(r[im.columns].to_numpy() - b[im.columns].to_numpy()).max() <= 1e-6 and (r.signal == b.signal).all()
    assert 'S003' not in b.index.unique('symbol')                          # too short for a window ...
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        without = predict(im, ragged.drop(index='S003', level='symbol'))
    listed = _dates(panel_features(ragged)[0].loc[['S003']])
    near = b.index.get_level_values('date') >= listed.min()
    assert not np.allclose(without.loc[b.index[near], 'p_up'], b.loc[near, 'p_up'])   # ... but listed on its dates: the others move
    assert np.array_equal(without.loc[b.index[~near], 'p_up'], b.loc[~near, 'p_up'])  # windows before it: unchanged
    # a symbol in its warm-up is not listed: windows that end before S001's first feature row are as without S001
    first = panel_features(ragged)[0].loc['S001'].index.min()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        no1 = predict(im, ragged.drop(index='S001', level='symbol'))
    early = (b.index.get_level_values('date') < first) & (b.index.get_level_values('symbol') != 'S001')
    assert early.sum() > 50 and np.array_equal(no1.loc[b.index[early], 'p_up'], b.loc[early, 'p_up'])

def test_a_missing_symbol_in_a_tick_is_never_silent(ragged, cs_models):
    "A tick without a symbol the panel has that date, its bar coming later: the late bar is rejected with the reason"
    from trading_nb.inference import StreamStates, _ticks, predict
    im = cs_models['zscore']
    d = _dates(ragged).unique()
    ss = StreamStates(im, history=ragged[_dates(ragged) < d[-3]])
    tick = _ticks(ragged[_dates(ragged) == d[-3]])[0]
    assert [b['symbol'] for b in tick] == ['S000', 'S001', 'S002', 'S003', 'S004']
    answered = ss.update([b for b in tick if b['symbol'] != 'S002'])
    late = ss.update([b for b in tick if b['symbol'] == 'S002'])[0]
    assert late['status'] == 'rejected' and 'is closed' in late['reason'] and 'one tick' in late['reason']
    assert ss.states['S002'].rejected == 1 and ss.closed == d[-3]
    # the answers given were for the cross-section of four: not the batch's five, and they say which symbols made it
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        b = predict(im, ragged)
    ok = [a for a in answered if a['status'] == 'ok']
    assert ok and not np.allclose([a['p_up'] for a in ok], b.loc[[(a['symbol'], a['date']) for a in ok], 'p_up'].to_numpy(), atol=1e-6)

def test_single_symbol_and_store_refuse(ragged, cs_models, stocks, tmp_path):
    from trading_nb.inference import StreamState, StreamStates, predict, predict_store, replay
    from trading_nb.pipeline import DataSpec, Experiment, FeatureSpec, store_parts
    from trading_nb.store import build_store
    im = cs_models['rank']
    msg = "has no cross-section"
    for f in (lambda: predict(im, ragged.loc['S000']), lambda: replay(im, ragged.loc['S000']),
              lambda: StreamStates(im, history=ragged.loc['S000']), lambda: StreamState(im, history=ragged.loc['S000'])):
        with pytest.raises(DataError, match=msg): f()
    with pytest.raises(ValueError, match="a StreamState serves one series, which has no cross-section"): StreamState(im).update(next(ragged.iterrows()))
    with pytest.raises(DataError, match=r"the panel has one symbol \('S000'\)"): predict(im, ragged.loc[['S000']])
    with pytest.raises(DataError, match="a single series has no cross-section: use cross_section='none'"):
        TradingDataset(stocks.loc['IBM'], cross_section='zscore')
    with pytest.raises(DataError, match=r"the panel has one symbol \('IBM'\)"): chronological_split(stocks.loc[['IBM']], cross_section='rank')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        st = build_store(ragged, tmp_path / 'store')
    with pytest.raises(DataError, match="a feature store does not support"): predict_store(im, st, tmp_path / 'p.csv')
    exp = Experiment(data=DataSpec(source=str(tmp_path / 'store')), features=FeatureSpec(lookback=20, cross_section='zscore'))
    with pytest.raises(ValueError, match="not supported with a feature store.*in memory"): store_parts(exp, tmp_path / 'store')

def test_manifest_round_trip(cs_models, tmp_path):
    from trading_nb.inference import ModelFileError, _digest, setup_inference
    im = cs_models['zscore']
    ck = torch.load(im.path, weights_only=True)
    assert ck['manifest']['cross_section'] == 'zscore'
    assert setup_inference(im.path, device='cpu').cross_section == 'zscore'
    for value, ok in (('median', False), (None, True)):                    # a value it does not know; a file from before the setting
        m = dict(ck['manifest'])
        if value is None: m.pop('cross_section')
        else: m['cross_section'] = value
        bad = dict(ck, manifest=m, sha256=_digest(ck['config'], m, ck['state_dict']))
        torch.save(bad, tmp_path / 'm.pt')
        if ok: assert setup_inference(tmp_path / 'm.pt', device='cpu').cross_section == 'none'
        else:
            with pytest.raises(ModelFileError, match="cross_section 'median' is not one of"): setup_inference(tmp_path / 'm.pt', device='cpu')

def test_cross_section_through_the_cli(ragged, tmp_path):
    "trading-nb train --cross-section rank on a panel file: the run records it, predict and replay apply it unasked and agree; a series is refused"
    import subprocess, sys, tomllib
    from pathlib import Path
    exe = str(Path(sys.executable).parent / 'trading-nb')
    cli = lambda *a: subprocess.run([exe, *map(str, a)], capture_output=True, text=True, timeout=900)
    ragged.to_csv(tmp_path / 'panel.csv')
    r = cli('train', '--data', tmp_path / 'panel.csv', '--out', tmp_path / 'run', '--epochs', '1', '--lookback', '20', '--cross-section', 'rank',
            '--cache-dir', 'none', '--quiet')
    assert r.returncode == 0, r.stderr[-2000:]
    assert tomllib.loads((tmp_path / 'run' / 'config.toml').read_text())['features']['cross_section'] == 'rank'
    assert torch.load(tmp_path / 'run' / 'model.pt', weights_only=True)['manifest']['cross_section'] == 'rank'
    for cmd in ('predict', 'replay'): assert cli(cmd, '--model', tmp_path / 'run' / 'model.pt', '--data', tmp_path / 'panel.csv', '--out', tmp_path / f'{cmd}.csv').returncode == 0
    p, s = pd.read_csv(tmp_path / 'predict.csv'), pd.read_csv(tmp_path / 'replay.csv')
    assert len(p) == len(s) > 0 and np.abs(p['p_up'] - s['p_up']).max() <= 1e-5
    ragged.loc['S000'].to_csv(tmp_path / 'one.csv')
    r = cli('train', '--data', tmp_path / 'one.csv', '--out', tmp_path / 'run1', '--epochs', '1', '--lookback', '20', '--cross-section', 'zscore', '--quiet')
    assert r.returncode != 0 and "a single series has no cross-section: use cross_section='none'" in r.stderr

def test_a_streamed_spike_is_refused_across_symbols_too(ragged, cs_models):
    from trading_nb.inference import StreamStates, _ticks
    im = cs_models['zscore']
    d = _dates(ragged).unique()
    ss = StreamStates(im, history=ragged[_dates(ragged) < d[-1]])
    tick = _ticks(ragged[_dates(ragged) == d[-1]])[0]
    tick[1] = dict(tick[1], **{k: tick[1][k] * 5 for k in ('open', 'high', 'low', 'close')})
    got = ss.update(tick)
    assert got[1]['status'] == 'rejected' and got[1]['symbol'] == 'S001' and 'spike' in got[1]['reason']
    assert [a['status'] for a in got] == ['ok', 'rejected', 'ok', 'warmup', 'ok']   # S003: listed, too short for a window
