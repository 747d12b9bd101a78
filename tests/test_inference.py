"Export, safe loading, data checks, batch prediction and the real-time stream's parity with it"
import asyncio, math
import numpy as np
import pandas as pd
import pytest
import torch
from trading_nb.data import DataError, OHLCV_COLS, load_sample, make_synthetic, sample_path
from trading_nb.dataset import chronological_split
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import fit
import trading_nb.inference as inf
from trading_nb.inference import (FORMAT, ModelFileError, StreamState, _digest, export_model, predict, process_realtime, replay,
                                  setup_inference)


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
    assert torch.equal(predict(im, b), want)
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
    st = StreamState(im)
    held = []
    def bars():
        for ts, row in sp.iloc[first - im.history_bars + 1:].iterrows():
            held.append(len(st.bars))
            yield ts, row
    answers = collect((im, bars()), state=st)
    live = pd.DataFrame([a for a in answers if a['status'] == 'ok']).set_index('date')
    assert list(live.index) == list(sp.index[first:])
    diff = float(np.abs(live[im.columns].to_numpy() - preds.loc[live.index, im.columns].to_numpy()).max())
    print(f"\nstream vs batch over the test period ({len(live)} bars, {live.index[0].date()}..{live.index[-1].date()}): "
          f"max |dp| = {diff:.2e}")
    assert diff <= 1e-5
    assert (live.signal == preds.loc[live.index, 'signal']).all()
    assert max(held) <= im.warmup + 1 <= im.history_bars and len(st.rows) == im.lookback


def test_rejections_and_stream_goes_on(im, sp, preds):
    frame = sp.iloc[-(im.history_bars + 10):]
    good = [dict(date=ts, **row[list(OHLCV_COLS)].to_dict()) for ts, row in frame.iterrows()]
    spoilt = [('duplicate', good[-5]), ('out of order', {**good[3]}), ("field 'close' is NaN", {**good[-1], 'close': math.nan}),
              ("missing field 'open'", {k: v for k, v in good[-1].items() if k != 'open'}),
              ('non-positive price', {**good[-1], 'low': 0.0}), ('is below low', {**good[-1], 'high': good[-1]['low'] / 2}),
              ("missing field 'date'", {k: v for k, v in good[-1].items() if k != 'date'}),
              ("field 'volume' is negative", {**good[-1], 'volume': -1.0}), ('a bar is a dict', 3.5)]
    stream = good[:-4] + [b for _, b in spoilt] + good[-4:]
    answers = collect((im, stream))
    assert len(answers) == len(stream)
    rej = [a for a in answers if a['status'] == 'rejected']
    assert len(rej) == len(spoilt)
    for (why, _), a in zip(spoilt, rej): assert why in a['reason'], (why, a['reason'])
    ok = pd.DataFrame([a for a in answers if a['status'] == 'ok']).set_index('date')
    assert list(ok.index) == list(frame.index[im.history_bars - 1:])
    assert np.abs(ok[im.columns].to_numpy() - preds.loc[ok.index, im.columns].to_numpy()).max() <= 1e-5
    assert not any(isinstance(v, float) and math.isnan(v) for a in answers for v in a.values())
    warm = [a for a in answers if a['status'] == 'warmup']
    assert [a['bars_needed'] for a in warm] == list(range(im.history_bars - 1, 0, -1))


def test_memory_flat_over_long_stream(im):
    "Two thousand business-day bars: the history never grows past warmup + 1 bars and lookback rows"
    bars = make_synthetic(im.history_bars + 300, seed=3)
    st, sizes = StreamState(im), []
    async def go():
        async def feed():
            for item in bars.iterrows(): yield item
        async for a in process_realtime(im, feed(), state=st):
            sizes.append((len(st.bars), len(st.rows)))
            assert a['status'] != 'rejected'
            if a['status'] == 'ok': assert all(np.isfinite(a[c]) for c in im.columns)
    asyncio.run(go())
    assert max(b for b, _ in sizes) == im.warmup + 1 and max(r for _, r in sizes) == im.lookback
    assert st.accepted == len(bars)


def test_replay_matches_predict(im, sp):
    frame = sp.iloc[-(im.history_bars + 30):]
    r, b = replay(im, frame), predict(im, frame)
    assert list(r.columns) == list(b.columns) and r.index.equals(b.index) and r.dtypes.equals(b.dtypes)
    assert np.abs((r - b).to_numpy()).max() <= 1e-5 and r.attrs['rejected'] == []


def test_callback_and_hourly_stream(im):
    seen = []
    async def update_signals(p): seen.append(p['date'])
    hourly = make_synthetic(im.history_bars + 3, freq='h')
    with pytest.raises(DataError, match='1 hour apart'): collect((im, hourly.iterrows()))
    with pytest.warns(UserWarning, match='1 hour apart'):
        out = collect((im, hourly.iterrows()), update_signals=update_signals, on_mismatch='warn')
    assert seen == [a['date'] for a in out if a['status'] == 'ok'] and len(seen) == 4
