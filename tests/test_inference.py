"Export, safe loading, data checks, batch prediction, the traced forward pass, and the real-time stream (one series and many symbols): parity with batch, rejections, bounded memory"
import asyncio, math, warnings
from collections import deque
import numpy as np
import pandas as pd
import pytest
import torch
from trading_nb.data import DataError, OHLCV_COLS, load_sample, make_synthetic, make_synthetic_panel, sample_path
from trading_nb.dataset import chronological_split
from trading_nb.features import _raw_features, make_features, normalize_features
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import fit
import trading_nb.inference as inf
from trading_nb.inference import (FORMAT, InferenceModel, ModelFileError, StreamState, StreamStates, _digest, _ticks, export_model, predict,
                                  process_realtime, replay, setup_inference)
from walks import ohlcv_walk   # tests/walks.py


@pytest.fixture(scope='module')
def sp(): return load_sample('sp500')


@pytest.fixture(scope='module')
def trained(sp, tmp_path_factory):
    "A small model trained for one epoch on the S&P 500, exported; and the split it came from"
    torch.set_num_threads(1)
    train, val, test = chronological_split(sp, lookback=40, horizon=1)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=2, lookback=40,
                      conv_channels=16, hidden_size=32, indicator_hidden=16, head_hidden=16)
    model = TradingModel(cfg)
    fit(model, train, val, epochs=1, device='cpu', progress=False, seed=0)
    path = export_model(model, tmp_path_factory.mktemp('m') / 'model.pt', train, metrics=dict(accuracy=0.5),
                        data=sp, data_path=sample_path('sp500'))
    return model, path, train, test


@pytest.fixture(scope='module')
def im(trained): return setup_inference(trained[1], device='cpu')


@pytest.fixture(scope='module')
def preds(im, sp): return predict(im, sp)


def collect(stream, **kw):
    async def go(): return [a async for a in process_realtime(*stream, **kw)]
    return asyncio.run(go())



def held(x, seen=None) -> int:
    "How many numbers an object holds in its containers (deques, lists, arrays), recursively through attributes and slots"
    seen = set() if seen is None else seen
    if id(x) in seen or isinstance(x, (str, bytes, InferenceModel, type)): return 0
    seen.add(id(x))
    if isinstance(x, np.ndarray): return x.size
    if isinstance(x, (deque, list, tuple)): return len(x) + sum(held(v, seen) for v in x)
    if isinstance(x, dict): return sum(held(v, seen) for v in x.values())
    out = sum(held(v, seen) for v in getattr(x, '__dict__', {}).values())
    return out + sum(held(getattr(x, s), seen) for s in getattr(type(x), '__slots__', ()) if hasattr(x, s))


def rel_err(a, b) -> float:
    "Largest |a - b| / max(|b|, median |b| of the column, 1e-6) (features are scale-free: below 1e-6 is rounding noise)"
    a, b = np.asarray(a, 'float64'), np.asarray(b, 'float64')
    scale = np.maximum(np.maximum(np.abs(b), np.median(np.abs(b), axis=0)), 1e-6)
    return float(np.max(np.abs(a - b) / scale))


def maxdiff(x: pd.DataFrame, y: pd.DataFrame, cols) -> float:
    return float(np.abs(x[cols].to_numpy() - y[cols].to_numpy()).max())


def test_weights_only_and_manifest(trained, sp):
    model, path, train, _ = trained
    ck = torch.load(path, weights_only=True)
    assert ck['format'] == FORMAT
    m = ck['manifest']
    assert m['scaler'] == train.scaler and m['indicators'] == train.indicators and m['class_names'] == ['down', 'up']
    assert (m['lookback'], m['horizon'], m['task']) == (40, 1, 'classification')
    p = m['provenance']
    assert len(p['data_sha256']) == 64 and p['bar_spacing_s'] == 86400.0 and p['metrics'] == {'accuracy': 0.5}
    assert p['data_start'].startswith('1999-01-04') and p['data_end'].startswith('2018-12-31')
    assert all(p['versions'][k] for k in ('torch', 'pandas', 'pandas-ta', 'numpy'))
    assert ck['sha256'] == _digest(ck['config'], m, ck['state_dict'])


def test_round_trip_identical(trained, im, sp, tmp_path):
    model, path, train, test = trained
    model.eval()
    b = test.__getitems__(list(range(len(test))))
    with torch.no_grad(): want = torch.softmax(model(b['sequence'], b['indicators']), 1)
    assert torch.equal(predict(setup_inference(path, device='cpu', jit=False), b), want)    # eager: bit for bit
    assert (predict(im, b) - want).abs().max() <= 1e-6                                      # the traced graph (the CPU default)
    again = setup_inference(export_model(im.model, tmp_path / 'again.pt', train, data=sp), device='cpu')
    pd.testing.assert_frame_equal(predict(again, sp.iloc[-400:]), predict(im, sp.iloc[-400:]))


def test_predict_frame(im, sp, preds, trained):
    test = trained[3]
    assert list(preds.columns) == ['p_down', 'p_up', 'signal'] and preds.index[-1] == sp.index[-1]
    assert len(preds) == len(sp) - im.history_bars + 1 and not preds.isna().any().any()
    assert (preds.signal == (preds.p_up > 0.5).astype(int)).all()
    b = test.__getitems__(list(range(len(test))))
    assert np.abs(predict(im, b).numpy() - preds.loc[test.dates, ['p_down', 'p_up']].to_numpy()).max() <= 1e-6


@pytest.mark.parametrize('case, message', [
    ('truncated', 'not a readable model file; truncated or corrupt?'),
    ('tampered', 'checksum mismatch'),
    ('old_format', "format 'trading_nb.model/0', but this version of trading_nb reads"),
    ('unknown_format', "not a trading_nb model file (format 'x/1'"),
    ('training', 'a training checkpoint'),
    ('mismatch', 'the weights do not fit the config: size mismatch'),
    ('manifest_mismatch', 'the config has input_channels=7 but the manifest implies'),
    ('pickled', 'refused: it holds objects that safe (weights_only) loading does not allow'),
    ('empty', 'the file is empty'),
    ('missing', 'no such model file'),
])
def test_bad_files_name_file_and_problem(trained, tmp_path, case, message):
    path = trained[1]
    ck = torch.load(path, weights_only=True)
    bad = tmp_path / f'{case}.pt'
    def save(fix=True, **changes):
        d = {**ck, **changes}
        if fix: d['sha256'] = _digest(d['config'], d['manifest'], d['state_dict'])
        torch.save(d, bad)
    if case == 'truncated': bad.write_bytes(path.read_bytes()[:-1000])
    elif case == 'tampered':
        state = {k: v.clone() for k, v in ck['state_dict'].items()}
        state['technical.weight'][0, 0] += 1e-3
        save(fix=False, state_dict=state)
    elif case == 'old_format': save(format='trading_nb.model/0')
    elif case == 'unknown_format': save(format='x/1')
    elif case == 'training': save(format='trading_nb.train/1')
    elif case == 'mismatch': save(config={**ck['config'], 'conv_channels': 8})
    elif case == 'manifest_mismatch': save(config={**ck['config'], 'input_channels': 7})
    elif case == 'pickled': torch.save(dict(format=FORMAT, x=pd.Timestamp('2020-01-01')), bad)
    elif case == 'empty': bad.write_bytes(b'')
    exc = FileNotFoundError if case == 'missing' else ModelFileError
    with pytest.raises(exc) as e: setup_inference(bad)
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value), str(e.value)


@pytest.mark.parametrize('data, message', [
    (lambda sp: sp.drop(columns='volume'), "missing column 'volume'"),
    (lambda sp: make_synthetic(600, freq='h'), 'the bars are 1 hour apart but the model was trained on bars 1 day apart'),
    (lambda sp: sp.iloc[:100], 'but one prediction needs'),
])
def test_data_refused_before_predicting(im, sp, monkeypatch, data, message):
    def no_forward(*a, **k): raise AssertionError("the model ran on refused data")
    monkeypatch.setattr(inf, '_forward', no_forward)
    with pytest.raises(DataError, match=message): predict(im, data(sp))


def test_stream_parity_over_test_period(im, sp, preds, trained):
    "The stream, fed only the bars from history_bars before the test period on, equals batch `predict` on all 5,031 bars"
    test = trained[3]
    first = sp.index.get_loc(test.dates[0])
    start = first - im.history_bars + 1
    st = StreamState(im)
    sizes, rows = [], []
    def bars():
        for ts, row in sp.iloc[start:].iterrows():
            yield ts, row
            sizes.append(held(st))
    answers = collect((im, bars()), state=st, update_signals=lambda a: rows.append(st.row.copy()))
    live = pd.DataFrame([a for a in answers if a['status'] == 'ok']).set_index('date')
    assert list(live.index) == list(sp.index[first:])
    diff = maxdiff(live, preds.loc[live.index], im.columns)
    feats = make_features(sp.iloc[start:], im.indicators)[im.feature_names].loc[live.index]
    ferr = rel_err(rows, feats.to_numpy())
    print(f"\nstream vs batch over the test period ({len(live)} bars, {live.index[0].date()}..{live.index[-1].date()}): "
          f"max |dp| = {diff:.2e}; features vs make_features: {ferr:.1e} relative")
    assert diff <= 1e-6 and ferr <= 1e-9
    assert (live.signal == preds.loc[live.index, 'signal']).all()
    assert len(set(sizes[im.history_bars:])) == 1 and st.n_rows == im.lookback     # memory flat once warm


@pytest.mark.parametrize('seed, flat', [(0, 0.05), (1, 0.3), (2, 0.0), (3, 0.15)])
def test_replay_equals_predict_on_random_walks(im, seed, flat):
    "Random walks with flat bars and zero-volume runs: replay equals predict to 1e-6, the stream's features make_features to 1e-9"
    df = ohlcv_walk(im.history_bars + 300, seed, flat=flat, zero_runs=4)
    assert (df.volume == 0).sum() > 0 and (df.high == df.low).sum() == (df.high == df.low).sum()
    r, b = replay(im, df), predict(im, df)
    assert r.index.equals(b.index) and list(r.columns) == list(b.columns)
    assert maxdiff(r, b, im.columns) <= 1e-6 and (r.signal == b.signal).all()
    st, rows = StreamState(im), []
    for item in df.iterrows():
        st.update(item)
        if st.features.ready: rows.append(st.row)
    assert rel_err(rows, make_features(df, im.indicators)[im.feature_names].to_numpy()) <= 1e-9


@pytest.mark.parametrize('talib', [True, False], ids=['talib', 'no-talib'])
def test_stream_features_with_and_without_talib(im, sp, talib, monkeypatch):
    "The stream's rows equal make_features after the warm-up whether TA-Lib is importable or not"
    import pandas_ta.maps
    monkeypatch.setitem(pandas_ta.maps.Imports, 'talib', talib)
    df = sp.iloc[-(im.history_bars + 200):]
    st, rows = StreamState(im), []
    for item in df.iterrows():
        st.update(item)
        if st.features.ready: rows.append(st.row)
    assert rel_err(rows, make_features(df, im.indicators)[im.feature_names].to_numpy()) <= 1e-9


def test_non_finite_feature_bar_is_kept_and_rejected(im):
    "A flat start makes RSI 0/0: those bars are kept in the features, answered 'rejected'; predictions resume after lookback bars"
    df = make_synthetic(im.warmup + 200 + im.lookback + 20, seed=5)
    df.iloc[:im.warmup + 200, :4] = 100.0
    df.iloc[:im.warmup + 200, 4] = 1000.0
    with pytest.raises(DataError, match="feature 'rsi_14' is nan"): predict(im, df)     # the batch path refuses the series
    st = StreamState(im)
    out = pd.DataFrame([st.update(item) for item in df.iterrows()])
    bad = out.index[out.status == 'rejected']
    assert list(bad) == list(range(im.warmup, im.warmup + 200))
    assert out.reason[bad].str.contains("feature 'rsi_14' is nan at this bar; the bar is kept").all()
    assert (out.bars_needed[bad] == im.lookback).all()
    ok = np.flatnonzero(out.status == 'ok')
    assert ok[0] == bad[-1] + im.lookback and len(ok) == len(df) - ok[0]
    assert st.accepted == len(df) and st.rejected == 200
    # the predictions are the model's on the raw batch features of the same bars: the flat bars stayed in the state
    X = torch.from_numpy(normalize_features(_raw_features(df, im.indicators)[im.feature_names], im.scaler)[0].to_numpy(np.float32).copy())
    want = inf._forward(im, X.unfold(0, im.lookback, 1).transpose(1, 2)[ok - im.lookback + 1], X[ok, st.n_price:]).numpy()
    assert np.abs(out.loc[ok, im.columns].to_numpy('float64') - want).max() <= 1e-6


def test_history_starts_the_state(im, sp, preds):
    H = im.history_bars
    warmed = StreamState(im, history=sp.iloc[:-5])
    assert warmed.n_rows == im.lookback and warmed.bars_needed == 0 and warmed.accepted == len(sp) - 5
    out = [warmed.update(item) for item in sp.iloc[-5:].iterrows()]
    assert [a['status'] for a in out] == ['ok'] * 5
    assert np.abs(np.array([[a[c] for c in im.columns] for a in out]) - preds[im.columns].iloc[-5:].to_numpy()).max() <= 1e-6
    got = collect((im, sp.iloc[-5:].iterrows()), history=sp.iloc[-(H + 5):-5])
    assert [a['status'] for a in got] == ['ok'] * 5
    assert max(abs(a['p_up'] - b['p_up']) for a, b in zip(got, out)) <= 1e-6
    assert warmed.update((sp.index[-1], sp.iloc[-1]))['reason'].startswith('duplicate')
    with pytest.raises(DataError, match='the history does not follow the bars already taken: out of order'):
        StreamState(im, history=sp.iloc[100:200]).warm(sp.iloc[:50])
    with pytest.raises(ValueError, match='give the history to the state you pass'):
        collect((im, []), state=StreamState(im), history=sp.iloc[:10])
    short = StreamState(im, history=sp.iloc[:10])
    assert short.bars_needed == H - 10 and short.update((sp.index[10], sp.iloc[10]))['bars_needed'] == H - 11


def test_rejections_and_stream_goes_on(im, sp, preds):
    frame = sp.iloc[-(im.history_bars + 10):]
    good = [dict(date=ts, **row[list(OHLCV_COLS)].to_dict()) for ts, row in frame.iterrows()]
    spoilt = [('duplicate', good[-5]), ('out of order', {**good[3]}), ("field 'close' is NaN", {**good[-1], 'close': math.nan}),
              ("missing field 'open'", {k: v for k, v in good[-1].items() if k != 'open'}),
              ('non-positive price', {**good[-1], 'low': 0.0}), ('is below low', {**good[-1], 'high': good[-1]['low'] / 2}),
              ("missing field 'date'", {k: v for k, v in good[-1].items() if k != 'date'}),
              ("field 'volume' is negative", {**good[-1], 'volume': -1.0}), ('a bar is a dict', 3.5),
              ("invalid symbol nan", {**good[-1], 'symbol': math.nan})]
    stream = good[:-4] + [b for _, b in spoilt] + good[-4:]
    answers = collect((im, stream))
    assert len(answers) == len(stream)
    rej = [a for a in answers if a['status'] == 'rejected']
    assert len(rej) == len(spoilt)
    for (why, _), a in zip(spoilt, rej): assert why in a['reason'], (why, a['reason'])
    ok = pd.DataFrame([a for a in answers if a['status'] == 'ok']).set_index('date')
    assert list(ok.index) == list(frame.index[im.history_bars - 1:])
    assert maxdiff(ok, preds.loc[ok.index], im.columns) <= 1e-6
    assert not any(isinstance(v, float) and math.isnan(v) for a in answers for v in a.values())
    warm = [a for a in answers if a['status'] == 'warmup']
    assert [a['bars_needed'] for a in warm] == list(range(im.history_bars - 1, 0, -1))
    assert {a['symbol'] for a in answers} == {None}


def test_memory_flat_over_long_stream(im):
    "Two thousand bars more than the warm-up: what the state holds stops growing once it is warm"
    bars = make_synthetic(im.history_bars + 2000, seed=3)
    st, sizes = StreamState(im), []
    async def go():
        async def feed():
            for item in bars.iterrows(): yield item
        async for a in process_realtime(im, feed(), state=st):
            sizes.append(held(st))
            assert a['status'] != 'rejected'
            if a['status'] == 'ok': assert all(np.isfinite(a[c]) for c in im.columns)
    asyncio.run(go())
    after = sizes[im.history_bars:]
    assert min(after) == max(after) <= max(sizes)
    assert st.accepted == len(bars) and st.n_rows == im.lookback


def test_replay_matches_predict(im, sp):
    frame = sp.iloc[-(im.history_bars + 30):]
    r, b = replay(im, frame), predict(im, frame)
    assert list(r.columns) == list(b.columns) and r.index.equals(b.index) and r.dtypes.equals(b.dtypes)
    assert np.abs((r - b).to_numpy()).max() <= 1e-6 and r.attrs['rejected'] == []


def test_callback_and_hourly_stream(im):
    seen = []
    async def update_signals(p): seen.append(p['date'])
    hourly = make_synthetic(im.history_bars + 3, freq='h')
    with pytest.raises(DataError, match='1 hour apart'): collect((im, hourly.iterrows()))
    with pytest.warns(UserWarning, match='1 hour apart'):
        out = collect((im, hourly.iterrows()), update_signals=update_signals, on_mismatch='warn')
    assert seen == [a['date'] for a in out if a['status'] == 'ok'] and len(seen) == 4


# ---------------------------------------------------------------- many symbols
@pytest.fixture(scope='module')
def panel(im):
    "Five synthetic symbols: ragged starts, one too short to predict, one with flat bars and zero-volume runs"
    p = make_synthetic_panel(4, im.history_bars + 150, seed=7)
    parts = {s: g.droplevel('symbol') for s, g in p.groupby(level='symbol')}
    parts['S001'] = parts['S001'].iloc[40:]                              # starts later
    parts['S003'] = parts['S003'].iloc[:im.history_bars - 20]            # never gets a prediction
    walk = ohlcv_walk(im.history_bars + 120, 11, flat=0.2, zero_runs=5)
    parts['W'] = walk.set_axis(parts['S000'].index[-len(walk):])
    return pd.concat(parts, names=['symbol', 'date']).sort_index()


def test_panel_replay_equals_predict(im, panel):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')          # predict warns that S003 is too short
        b = predict(im, panel)
    r = replay(im, panel)
    assert r.index.equals(b.index) and list(r.columns) == list(b.columns) and r.dtypes.equals(b.dtypes)
    d = maxdiff(r, b, im.columns)
    print(f"\npanel replay vs predict: {len(r)} rows, {r.index.unique('symbol').size} symbols, max |dp| = {d:.1e}")
    assert d <= 1e-6 and (r.signal == b.signal).all()
    assert 'S003' not in r.index.unique('symbol') and r.attrs['rejected'] == [] and r.attrs['unseen_symbols'] == []
    ticks = _ticks(panel)
    assert len(ticks) == panel.index.unique('date').size and sum(map(len, ticks)) == len(panel)
    assert all(len({b['date'] for b in t}) == 1 for t in ticks)


def test_one_forward_pass_per_tick(im, panel, monkeypatch):
    "A tick runs the model once for every symbol whose window is ready; the answers are those of one bar at a time"
    dates = panel.index.unique('date')
    hist = panel[panel.index.get_level_values('date') < dates[-3]]
    calls = []
    real = inf._forward
    def counting(model, seq, ind, batch_size=1024):
        calls.append(len(seq))
        return real(model, seq, ind, batch_size)
    one = StreamStates(im, history=hist)
    ticks = _ticks(panel[panel.index.get_level_values('date') >= dates[-3]])
    singly = [one.update(bar)[0] for t in ticks for bar in t]
    monkeypatch.setattr(inf, '_forward', counting)
    many = StreamStates(im, history=hist)
    batched = [a for t in ticks for a in many.update(t)]
    bounds = np.cumsum([0] + [len(t) for t in ticks])
    ready = [sum(a['status'] == 'ok' for a in batched[lo:hi]) for lo, hi in zip(bounds[:-1], bounds[1:])]
    assert calls == ready and all(n >= 3 for n in calls)          # one call per tick, one window per ready symbol
    assert [a['symbol'] for a in batched] == [b['symbol'] for t in ticks for b in t]
    for a, b in zip(batched, singly):
        assert (a['symbol'], a['date'], a['status']) == (b['symbol'], b['date'], b['status'])
        if a['status'] == 'ok': assert abs(a['p_up'] - b['p_up']) <= 1e-6
    # two bars of one symbol in a tick: each predicted from its own window
    nxt = panel.loc['S000'].iloc[-2:]
    two = StreamStates(im, history=panel.loc[['S000']].iloc[:-2])
    calls.clear()
    got = two.update([dict(symbol='S000', date=ts, **row) for ts, row in nxt.iterrows()])
    assert calls == [2]
    ref = StreamState(im, history=panel.loc['S000'].iloc[:-2])
    want = [ref.update(item) for item in nxt.iterrows()]
    assert [a['p_up'] for a in got] == pytest.approx([a['p_up'] for a in want], abs=1e-6)


def test_ticks_through_process_realtime(im, panel):
    ticks = _ticks(panel)
    seen = []
    answers = collect((im, ticks), update_signals=seen.append)
    assert len(answers) == len(panel) and [a['symbol'] for a in answers] == [b['symbol'] for t in ticks for b in t]
    assert [a for a in answers if a['status'] == 'ok'] == seen
    # panel rows as (key, row) pairs, itertuples and Series carry their symbol too
    for item in (next(panel.iterrows()), next(panel.itertuples()), panel.iloc[0]):
        assert collect((im, [item]))[0]['symbol'] == panel.index[0][0]


def test_symbols_are_not_mixed(im, sp):
    bars = [dict(date=ts, symbol='A', **r) for ts, r in sp.iloc[:5][list(OHLCV_COLS)].to_dict('index').items()]
    st = StreamState(im)
    assert st.update(bars[0])['symbol'] == 'A' and st.symbol == 'A'        # a fresh single state takes the first bar's symbol
    a = st.update({**bars[1], 'symbol': 'B'})
    assert a['status'] == 'rejected' and "a bar for 'B' in the stream of 'A': a StreamState serves one series" in a['reason']
    assert st.update(bars[1])['status'] == 'warmup' and st.rejected == 1
    ss = StreamStates(im)
    out = ss.update([bars[0], {k: v for k, v in bars[1].items() if k != 'symbol'}, {**bars[0], 'symbol': 'B'}])
    assert [a['status'] for a in out] == ['warmup', 'rejected', 'warmup']
    assert "missing field 'symbol': the stream's other bars carry one" in out[1]['reason']
    assert (len(ss), ss.rejected, ss.accepted) == (2, 1, 2)
    unnamed = StreamStates(im)
    unnamed.update({k: v for k, v in bars[0].items() if k != 'symbol'})
    assert 'in a stream whose earlier bars carried none' in unnamed.update(bars[1])[0]['reason']
    only = StreamStates(im, symbols=['A'])
    assert "symbol 'B' is not one of the 1 symbols this stream serves" in only.update({**bars[0], 'symbol': 'B'})[0]['reason']
    assert len(only) == 0
    with pytest.raises(ValueError, match='the state was made for another model'):
        collect((setup_inference(im.path, device='cpu'), []), state=ss)


def test_memory_bounded_per_symbol(im):
    "Many symbols over a long stream: each symbol's state stops growing once warm, and all hold the same"
    p = make_synthetic_panel(3, im.history_bars + 600, seed=2)
    ss, sizes = StreamStates(im), []
    for tick in _ticks(p):
        ss.update(tick)
        sizes.append([held(s) for s in ss.states.values()])
    after = np.array(sizes[im.history_bars:])
    assert (after == after[0, 0]).all() and len(ss) == 3
    assert all(s.n_rows == im.lookback and s.accepted == im.history_bars + 600 for s in ss.states.values())


# ---------------------------------------------------------------- the traced forward pass
def windows(im, b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, im.lookback, len(im.feature_names), generator=g)
    return x, x[:, -1, -len(im.indicator_names):]


def eager_probs(im, x, ind) -> torch.Tensor:
    with torch.inference_mode(): return torch.softmax(im.model(x, ind), dim=1)


@pytest.mark.parametrize('b', [1, 2, 3, 64, 500, 1500])
def test_traced_equals_eager(im, b):
    "The frozen graph (traced at batch 2) gives the eager model's probabilities at every batch size the stream and predict use"
    assert im.jit and isinstance(im._runner(), torch.jit.ScriptModule) and im.jit_error is None
    x, ind = windows(im, b, seed=b)
    got, want = inf._forward(im, x, ind, batch_size=1024), eager_probs(im, x, ind)
    assert got.shape == want.shape == (b, 2) and (got - want).abs().max() <= 1e-6


def test_traced_at_design_sizes(sp, tmp_path):
    "The default model (lookback 100, conv 64, LSTM 128 x 2, 4 heads) traced equals eager at 1, 3 and 500 windows"
    train, _, _ = chronological_split(sp, lookback=100)
    torch.manual_seed(0)
    cfg = ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim, lookback=100)
    big = setup_inference(export_model(TradingModel(cfg), tmp_path / 'big.pt', train, data=sp), device='cpu')
    for b in (1, 3, 500):
        x, ind = windows(big, b, seed=b)
        assert (inf._forward(big, x, ind) - eager_probs(big, x, ind)).abs().max() <= 1e-6
    assert isinstance(big._runner(), torch.jit.ScriptModule) and big.jit_error is None


def test_jit_off_is_eager(trained, im, sp):
    "jit=False (or im.jit = False) runs the eager model: bit for bit its numbers; the stream and replay agree with the traced ones"
    off = setup_inference(trained[1], device='cpu', jit=False)
    assert not off.jit and off._runner() is off.model and off._graph is None and 'eager' in repr(off)
    x, ind = windows(off, 7)
    assert torch.equal(inf._forward(off, x, ind), eager_probs(off, x, ind))
    df = sp.iloc[-(im.history_bars + 60):]
    a, b = replay(off, df), replay(im, df)
    assert a.index.equals(b.index) and maxdiff(a, b, im.columns) <= 1e-6
    assert maxdiff(a, predict(off, df), im.columns) <= 1e-6
    off.jit = True                                   # switched on later: traced from then on
    assert isinstance(off._runner(), torch.jit.ScriptModule)


def test_cuda_defaults_to_eager(trained):
    "On CUDA the default is eager (the measured gain is a CPU one); `jit=True` asks for the graph there"
    if not torch.cuda.is_available(): pytest.skip('no CUDA here')
    gpu = setup_inference(trained[1], device='cuda')
    assert not gpu.jit and gpu._runner() is gpu.model
    on = setup_inference(trained[1], device='cuda', jit=True)
    x, ind = windows(on, 5)
    assert (inf._forward(on, x, ind) - inf._forward(gpu, x, ind)).abs().max() <= 1e-5


def test_trace_failure_falls_back_to_eager(trained, monkeypatch):
    "A model that cannot be traced runs eagerly, with a warning naming why, and the trace is not retried on every call"
    calls = []
    def broken(im):
        calls.append(1)
        raise RuntimeError('the tracer cannot follow this model')
    monkeypatch.setattr(inf, '_trace', broken)
    with pytest.warns(UserWarning, match='runs eagerly: tracing the model failed .RuntimeError: the tracer cannot follow this model'):
        m = setup_inference(trained[1], device='cpu')
        st = StreamState(m)                          # the stream builds the graph when it is made
    assert m.jit_error == 'RuntimeError: the tracer cannot follow this model' and m._runner() is m.model
    x, ind = windows(m, 3)
    assert torch.equal(inf._forward(m, x, ind), eager_probs(m, x, ind)) and len(calls) == 1
    assert st.model is m


def test_graph_follows_the_weights(trained):
    "The frozen graph holds the weights it was traced with: loading new weights in place rebuilds it; train mode runs eagerly"
    m = setup_inference(trained[1], device='cpu')
    x, ind = windows(m, 4)
    before = inf._forward(m, x, ind)
    g = m._runner()
    weights = dict(m.model.named_parameters())
    m.model.load_state_dict({k: v + 0.05 * torch.randn_like(v) if k in weights else v for k, v in m.model.state_dict().items()})
    after = inf._forward(m, x, ind)
    g2 = m._runner()
    assert g2 is not g and (after - before).abs().max() > 1e-3
    assert (after - eager_probs(m, x, ind)).abs().max() <= 1e-6
    with torch.no_grad(): m.model.predictor[-1].bias.add_(torch.tensor([1.0, -1.0]))   # an in-place edit, as an optimizer step makes
    edited = inf._forward(m, x, ind)
    assert (edited - after).abs().max() > 0.1 and (edited - eager_probs(m, x, ind)).abs().max() <= 1e-6 and m._runner() is not g2
    m.model.train()
    assert m._runner() is m.model
    m.model.eval()


def test_input_checks_before_the_graph(im):
    "The traced graph has no Python-side checks; the model's own run before it, with their messages"
    x, ind = windows(im, 3)
    with pytest.raises(ValueError, match=rf'sequence must be \(batch, lookback=40, input_channels={x.shape[2]}\)'): inf._forward(im, x[:, 1:], ind)
    with pytest.raises(ValueError, match=r'indicators must be \(batch, n_indicators='): inf._forward(im, x, ind[:, 1:])
    with pytest.raises(ValueError, match='different batch sizes'): inf._forward(im, x, ind[:2])
    with pytest.raises(ValueError, match='must be a float tensor'): inf._forward(im, x.to(torch.int64), ind)
    with pytest.raises(ValueError, match='must have 3 dimensions'): inf._forward(im, x[0], ind)


def test_row_names_kept_per_index(sp):
    "A frame's rows share one index: its lower-cased names are worked out once and reused while the index is the same object"
    names = [None, None]
    (t0, r0), (t1, r1) = list(sp.iloc[:2].iterrows())
    a = inf._split_bar((t0, r0), names)
    assert names[0] is r0.index and names[1] == [c.lower() for c in sp.columns]
    kept = names[1]
    assert inf._split_bar((t1, r1), names)[2] == {k: float(v) for k, v in zip(kept, r1.tolist())} and names[1] is kept
    upper = sp.iloc[:1].rename(columns=str.upper)                    # another index: its own names, lower-cased
    _, _, row = inf._split_bar(next(upper.iterrows()), names)
    assert names[0] is upper.columns and sorted(row) == sorted(kept) and a[2] == inf._split_bar((t0, r0))[2]
    assert all(type(v) is float for v in row.values())               # plain Python numbers, as a dict bar carries
