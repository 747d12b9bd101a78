"""The bad-input matrix of data a user brings (issue 23): other CSV dialects and decimal marks, Excel's BOM and dd/mm/yyyy dates,
time zones, one-bar spikes, unadjusted splits and the real moves that must not be refused; for series, panels, the experiment
file, the command line and the live stream. Each case says what the file has and what the user sees; `CASES` is the README's table."""
import asyncio, io, contextlib, math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trading_nb.data import DataError, load_ohlcv, load_panel, load_sample, make_synthetic, sample_path
from trading_nb.experiment import ExperimentError, experiment_from_dict

RAW = pd.read_csv(sample_path('sp500')).head(400)   # real bars as a Yahoo CSV has them: Date,Open,High,Low,Close,Adj Close,Volume
REF = load_ohlcv(RAW)
DAY = str(REF.index[300].date())                     # where the planted errors go


def scaled(frame: pd.DataFrame, start: int, factor: float, stop: int | None = None, cols=('Open', 'High', 'Low', 'Close')) -> pd.DataFrame:
    "A copy with `cols` of rows `start:stop` multiplied by `factor`"
    d = frame.copy()
    d.loc[d.index[start:stop], list(cols)] = d.loc[d.index[start:stop], list(cols)] * factor
    return d

def real_move(frame: pd.DataFrame, t: int, f: float, open_gap: float, low: float, high: float, volume: float) -> pd.DataFrame:
    "A real repricing: every bar from `t` on x `f`; bar `t` opens at `open_gap` x the last close, with its own range and `volume` x the volume from then on"
    d = frame.copy()
    prev = d['Close'].iloc[t - 1]
    d = scaled(d, t, f)
    d.loc[d.index[t], ['Open', 'High', 'Low']] = [prev * open_gap, prev * high, prev * low]
    d.loc[d.index[t:], 'Volume'] = d['Volume'].iloc[t:] * volume
    return d

def write(tmp: Path, frame: pd.DataFrame, name='bars.csv', **kw) -> Path:
    p = tmp / name
    frame.to_csv(p, index=False, **kw)
    return p

def excel_sep_line(tmp: Path) -> Path:
    "A CSV as Excel writes one with a `sep=;` line first"
    (tmp / 'b.csv').write_text('sep=;\n' + RAW.to_csv(sep=';', index=False))
    return tmp / 'b.csv'

def dates(fmt: str, rows=RAW) -> pd.DataFrame: return rows.assign(Date=pd.to_datetime(rows.Date).dt.strftime(fmt))


# ---- series: files that load, and what they load as --------------------------------------------------------------------
# (case, what the file has, how it is written, load_ohlcv arguments, what the user sees)
LOADS = [
    ('semicolon', "`;` as the delimiter", lambda t: write(t, RAW, sep=';'), {}, 'the same bars (delimiter detected)'),
    ('euro-decimal', "`;` and decimal commas (a European Excel export)", lambda t: write(t, RAW, sep=';', decimal=','), {}, 'the same bars (delimiter and decimal mark detected)'),
    ('tab', "tabs as the delimiter", lambda t: write(t, RAW, sep='\t'), {}, 'the same bars'),
    ('pipe', "`|` as the delimiter", lambda t: write(t, RAW, sep='|'), {}, 'the same bars'),
    ('excel-sep-line', "Excel's `sep=;` first line", lambda t: excel_sep_line(t), {}, 'the same bars'),
    ('bom', "a UTF-8 byte-order mark (Excel's CSV UTF-8)", lambda t: write(t, RAW, encoding='utf-8-sig'), {}, 'the same bars'),
    ('dd/mm/yyyy', "dates written `dd/mm/yyyy`", lambda t: write(t, dates('%d/%m/%Y')), {}, 'the same dates (a day above 12 tells the order)'),
    ('mm/dd/yyyy', "dates written `mm/dd/yyyy`", lambda t: write(t, dates('%m/%d/%Y')), {}, 'the same dates'),
    ('dd.mm.yyyy', "dates written `dd.mm.yyyy` with `;` and decimal commas (German)", lambda t: write(t, dates('%d.%m.%Y'), sep=';', decimal=','), {}, 'the same bars'),
    ('ambiguous-told', "only the first 12 days of months, and `dayfirst=True`", lambda t: write(t, dates('%d/%m/%Y', RAW.head(5))), {'dayfirst': True}, 'the same dates'),
    ('sep-told', "`;` with `sep=';'` given", lambda t: write(t, RAW, sep=';'), {'sep': ';'}, 'the same bars'),
    ('spike-checks-off', "a price x1000 and `spike_threshold=inf`", lambda t: write(t, scaled(RAW, 300, 1000, 301)), {'spike_threshold': math.inf}, 'the bars as they are, spike included'),
    ('crash-day', "a real crash: -20% on a day, the level kept", lambda t: write(t, real_move(RAW, 300, 0.8, 0.97, 0.76, 0.98, 2.5)), {}, 'loaded: a real move is not an error'),
    ('halves-on-news', "a stock that halves on news and stays there (gap -45%, a wide range, volume x6)", lambda t: write(t, real_move(RAW, 300, 0.5, 0.55, 0.42, 0.57, 6.0)), {}, 'loaded'),
]

@pytest.mark.parametrize('case,what,make,kw,sees', LOADS, ids=[c[0] for c in LOADS])
def test_loads(tmp_path, case, what, make, kw, sees):
    got = load_ohlcv(make(tmp_path), **kw)
    if case in ('crash-day', 'halves-on-news'): assert len(got) == len(REF) and got.attrs['dropped'] == []
    elif case == 'spike-checks-off': assert got.close.iloc[300] == pytest.approx(REF.close.iloc[300] * 1000)
    else: pd.testing.assert_frame_equal(got, REF.head(len(got)), check_freq=False)

def test_crypto_month():
    "A crypto month of +400% (a 1:5 'reverse split' by its ratio, but the open does not gap and the range is wide): loaded"
    bars = make_synthetic(60, seed=5, vol=0.25, freq='MS', price=1000.0)
    prev = bars.close.iloc[29]
    bars.iloc[30:, :4] *= 5.0
    bars.iloc[30, :4] = [prev, prev * 8.0, prev * 0.9, bars.close.iloc[30]]
    assert len(load_ohlcv(bars)) == 60


# ---- series: what is refused, and the message's parts -----------------------------------------------------------------
# (case, what the file has, how it is written, load_ohlcv arguments, the parts the message must have)
REFUSED = [
    ('wrong-sep', "`;` delimiters read with `sep=','`", lambda t: write(t, RAW, sep=';'), {'sep': ','},
     ['no timestamp column', "The header looks ';'-separated", "sep=';'", "--sep ';'", "data.sep"]),
    ('decimal-comma-unsaid', "decimal commas read with `decimal='.'`", lambda t: write(t, RAW, sep=';', decimal=','), {'decimal': '.'},
     ["column 'open'", "'1229,22998'", '1999-01-04', "decimal comma", "decimal=','", "--decimal ','", 'data.decimal']),
    ('quoted-decimal-comma', "decimal commas quoted inside a comma-separated file", lambda t: write(t, RAW.astype({'Open': str}).assign(Open=RAW.Open.map(lambda v: f"{v:.2f}".replace('.', ','))), quoting=1), {},
     ["column 'open'", "'1229,23'", "decimal comma"]),
    ('utf16', "an Excel 'Unicode text' file (UTF-16)", lambda t: write(t, RAW, encoding='utf-16'), {}, ['not UTF-8', 'save it as CSV UTF-8']),
    ('ambiguous-dates', "`nn/nn/yyyy` dates with no day above 12", lambda t: write(t, dates('%d/%m/%Y', RAW.head(5))), {},
     ["column 'Date'", "'04/01/1999'", 'no day above 12', 'dayfirst=True', 'YYYY-MM-DD']),
    ('dates-two-ways', "some dates `dd/mm/yyyy`, others `mm/dd/yyyy`", lambda t: write(t, pd.concat([dates('%d/%m/%Y', RAW.head(20)), dates('%m/%d/%Y', RAW.iloc[20:40])])), {},
     ["column 'Date'", 'written two ways', "'13/01/1999'", 'day first', 'month first', 'YYYY-MM-DD']),
    ('spike-x1000', "one bar's prices x1000 (a fat-finger print)", lambda t: write(t, scaled(RAW, 300, 1000, 301)), {},
     [f"column 'close' has a one-bar spike at {DAY} (row 300)", '-> 1,', 'robust sigmas', 'threshold 12', '1 suspect bar', '--on-invalid drop', '--spike-threshold']),
    ('spike-low', "one bar's low at a tenth of the price (a bad tick)", lambda t: write(t, scaled(RAW, 300, 0.1, 301, cols=('Low',))), {},
     [f"column 'low' has a one-bar spike at {DAY}", '(-90.', 'taken back on the next bar']),
    ('split-4:1', "prices from a bar on divided by 4 (an unadjusted 4:1 split)", lambda t: write(t, scaled(RAW, 300, 0.25)), {},
     [f'a probable unadjusted 4:1 split at {DAY} (row 300)', 'the open gapped -75.', 'the new level held', '--adjust-splits', 'adjust_splits=True', 'spike_threshold=inf']),
    ('split-3:2', "an unadjusted 3:2 split, volume x1.5", lambda t: write(t, scaled(scaled(RAW, 300, 1 / 1.5), 300, 1.5, cols=('Volume',))), {},
     [f'a probable unadjusted 3:2 split at {DAY}', 'the volume went x1.']),
    ('reverse-split', "an unadjusted 1:10 reverse split", lambda t: write(t, scaled(RAW, 300, 10.0)), {}, [f'a probable unadjusted 1:10 reverse split at {DAY}', 'the open gapped +9']),
    ('split-series-drop', "an unadjusted split with `on_invalid='drop'` (a series has no symbol to drop)", lambda t: write(t, scaled(RAW, 300, 0.25)), {'on_invalid': 'drop'},
     ['4:1 split', 'adjust_splits=True']),
]

@pytest.mark.parametrize('case,what,make,kw,needles', REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(tmp_path, case, what, make, kw, needles):
    with pytest.raises(DataError) as e: load_ohlcv(make(tmp_path), **kw)
    for n in needles: assert n in str(e.value), f"{case}: {n!r} not in {str(e.value)!r}"


def test_spike_dropped_and_reported(tmp_path):
    got = load_ohlcv(write(tmp_path, scaled(RAW, 300, 1000, 301)), on_invalid='drop')
    assert len(got) == len(REF) - 1 and DAY not in got.index.strftime('%Y-%m-%d')
    [d] = got.attrs['dropped']
    assert d['date'] == DAY and d['reason'].startswith("column 'close' has a one-bar spike: close ")

def test_split_adjusted_and_reported(tmp_path):
    raw = scaled(scaled(RAW, 300, 0.25), 300, 4, cols=('Volume',))
    got = load_ohlcv(write(tmp_path, raw), adjust_splits=True)
    np.testing.assert_allclose(got[['open', 'high', 'low', 'close']].to_numpy() * 4, REF[['open', 'high', 'low', 'close']].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(got.volume.to_numpy() / 4, REF.volume.to_numpy(), rtol=1e-9)
    [a] = got.attrs['adjusted']
    assert (a['date'], a['ratio'], a['bars']) == (DAY, '4:1', 300) and 'prices / 4, volume x 4' in a['reason']


# ---- time zones: what the timestamps were in, what they became ----------------------------------------------------------
def offsets(frame, tz='America/New_York'):
    "`frame` with its dates at midnight in `tz`, written with their UTC offsets (1999-01-04 00:00:00-05:00)"
    return frame.assign(Date=pd.to_datetime(frame.Date).dt.tz_localize(tz).astype(str))

TIMEZONES = [
    ('daily-offsets', "daily bars at midnight New York, written with their offsets (-05:00 and -04:00 across DST)",
     lambda: offsets(RAW), None, 'UTC offset -04:00, -05:00, daily bars at midnight there: kept as their dates (not moved to UTC)', REF.index[0]),
    ('daily-aware-frame', "a frame indexed by New York midnights (tz-aware)", lambda: REF.tz_localize('America/New_York'), None,
     'America/New_York, daily bars at midnight there: kept as their dates (not moved to another zone)', REF.index[0]),
    ('intraday-one-offset', "hourly bars with one UTC offset", lambda: RAW.head(30).assign(Date=[f"2024-03-0{1 + i // 8} {10 + i % 8:02d}:00:00-05:00" for i in range(30)]),
     None, 'UTC offset -05:00 (kept)', pd.Timestamp('2024-03-01 10:00-05:00')),
    ('intraday-dst', "hourly bars whose offsets change (DST)", lambda: RAW.head(30).assign(Date=pd.date_range('2024-03-09 20:00', periods=30, freq='h', tz='America/New_York').astype(str)),
     None, 'UTC offset -04:00, -05:00: converted to UTC (offsets differ)', pd.Timestamp('2024-03-10 01:00', tz='UTC')),
    ('epoch-ms', "epoch milliseconds (crypto exchanges)", lambda: RAW.drop(columns='Date').assign(timestamp=pd.to_datetime(RAW.Date).dt.as_unit('ms').astype('int64')),
     None, 'epoch milliseconds: UTC', pd.Timestamp('1999-01-04', tz='UTC')),
    ('daily-to-zone', "daily New York midnights, and `tz='UTC'` asked for", lambda: offsets(RAW), 'UTC',
     'kept as their dates (not moved to UTC); then localized to UTC', pd.Timestamp('1999-01-04', tz='UTC')),
]

@pytest.mark.parametrize('case,what,make,tz,says,first', TIMEZONES, ids=[c[0] for c in TIMEZONES])
def test_timezones(case, what, make, tz, says, first):
    got = load_ohlcv(make(), tz=tz)
    assert says in got.attrs['timezone'], got.attrs['timezone']
    assert got.index[0] == first


# ---- panels ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def stocks(): return load_sample('stocks', on_invalid='drop')

def two(stocks) -> pd.DataFrame:
    "AAPL and IBM as one long frame"
    return stocks.loc[['AAPL', 'IBM']].reset_index()

def test_panel_known_flaw():
    "The bundled panel's real flaw (Samsung's close below its low on 2024-10-14): named, or dropped and reported"
    with pytest.raises(DataError) as e: load_sample('stocks')
    for n in ("symbol '005930.KS'", "column 'low' is above 'close'", 'low=59400.0', 'close=59300.0', '2024-10-14', '--on-invalid drop'): assert n in str(e.value)

def test_panel_bad_print(stocks):
    "One contract prints a close of 7.00 (the whole bar) between closes near 100: named by symbol, date and value; dropped when asked"
    long = two(stocks)
    i = long.index[(long.symbol == 'IBM') & (long.date == '2010-06-01')][0]
    long.loc[i, ['open', 'high', 'low', 'close']] = 7.0
    with pytest.raises(DataError) as e: load_panel(long)
    for n in ("symbol 'IBM': column 'close' has a one-bar spike at 2010-06-01", '-> 7 ->', 'robust sigmas', '--on-invalid drop'): assert n in str(e.value), str(e.value)
    got = load_panel(long, on_invalid='drop')
    assert got.attrs['dropped'] == [dict(symbol='IBM', date='2010-06-01', reason=got.attrs['dropped'][0]['reason'])]
    assert len(got) == len(long) - 1

def test_panel_split(stocks):
    "An unadjusted split in one symbol: refused naming it, the symbol dropped and reported, or adjusted and reported"
    long = two(stocks)
    m = (long.symbol == 'AAPL') & (long.date < '2005-02-28')
    long.loc[m, ['open', 'high', 'low', 'close']] *= 2
    long.loc[m, 'volume'] /= 2
    with pytest.raises(DataError) as e: load_panel(long)
    for n in ("symbol 'AAPL': a probable unadjusted 2:1 split at 2005-02-28", 'of the symbol', '--adjust-splits', "on_invalid='drop'"): assert n in str(e.value), str(e.value)
    dropped = load_panel(long, on_invalid='drop')
    assert list(dropped.index.unique('symbol')) == ['IBM'] and dropped.attrs['dropped'][0]['reason'].startswith('symbol dropped: a probable unadjusted 2:1 split')
    back = load_panel(long, adjust_splits=True)
    np.testing.assert_allclose(back.loc['AAPL'].close.to_numpy(), stocks.loc['AAPL'].close.to_numpy(), rtol=1e-9)
    assert [(a['symbol'], a['date'], a['ratio']) for a in back.attrs['adjusted']] == [('AAPL', '2005-02-28', '2:1')]

def test_panel_dialects(stocks, tmp_path):
    "A long file with `;` and decimal commas, and a folder of such files: the same panel"
    want = stocks.loc[['AAPL', 'IBM']]
    two(stocks).to_csv(tmp_path / 'long.csv', sep=';', decimal=',', index=False)
    pd.testing.assert_frame_equal(load_panel(tmp_path / 'long.csv'), want, check_exact=False, rtol=1e-12)
    folder = tmp_path / 'per_symbol'
    folder.mkdir()
    for sym, g in want.groupby(level='symbol'): g.droplevel('symbol').to_csv(folder / f'{sym}.csv', sep=';', decimal=',')
    pd.testing.assert_frame_equal(load_panel(folder), want, check_exact=False, rtol=1e-12)

def test_panel_dialects_by_name(stocks, tmp_path):
    "A `;` long file (and one with decimal commas) is a panel wherever a file is read by name: load_data and the command line"
    from trading_nb.pipeline import load_data
    want = stocks.loc[['AAPL', 'IBM']]
    for name, kw in (('semi.csv', dict(sep=';')), ('euro.csv', dict(sep=';', decimal=','))):
        two(stocks).to_csv(tmp_path / name, index=False, **kw)
        got, _ = load_data(tmp_path / name)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    rc, out, _ = run('summary', '--data', tmp_path / 'euro.csv')
    assert rc == 0 and 'a valid panel of 2 symbols' in out, out

def test_panel_file_as_series(stocks, tmp_path):
    "A many-symbol file given to load_ohlcv: refused as a panel, naming the column and the symbols (it used to say 'duplicate timestamp')"
    two(stocks).to_csv(tmp_path / 'long.csv', sep=';', index=False)
    with pytest.raises(DataError) as e: load_ohlcv(tmp_path / 'long.csv')
    for n in ("column 'symbol' names 2 symbols (AAPL, IBM)", 'this file is a panel', 'load_panel'): assert n in str(e.value), str(e.value)

def test_store_dialects_and_checks(stocks, tmp_path):
    "A feature store reads a `;`/decimal-comma long file as the `,` one (the same features) and applies the suspect-bar policy it is given"
    from trading_nb.store import build_store
    long = two(stocks)
    long.to_csv(tmp_path / 'plain.csv', index=False)
    long.to_csv(tmp_path / 'euro.csv', sep=';', decimal=',', index=False)
    a, b = build_store(tmp_path / 'plain.csv', tmp_path / 'a'), build_store(tmp_path / 'euro.csv', tmp_path / 'b')
    np.testing.assert_array_equal(np.asarray(a.features), np.asarray(b.features))
    assert a.symbols == b.symbols == ['AAPL', 'IBM'] and b.meta['spike_threshold'] == 12.0 and b.meta['adjust_splits'] is False
    m = (long.symbol == 'AAPL') & (long.date < '2005-02-28')
    long.loc[m, ['open', 'high', 'low', 'close']] *= 2
    long.loc[m, 'volume'] /= 2
    long.to_csv(tmp_path / 'split.csv', sep=';', decimal=',', index=False)
    with pytest.raises(DataError) as e: build_store(tmp_path / 'split.csv', tmp_path / 'c')
    assert "symbol 'AAPL': a probable unadjusted 2:1 split at 2005-02-28" in str(e.value), str(e.value)
    dropped = build_store(tmp_path / 'split.csv', tmp_path / 'd', on_invalid='drop')
    assert dropped.symbols == ['IBM'] and 'a probable unadjusted 2:1 split' in str(dropped.dropped)
    adj = build_store(tmp_path / 'split.csv', tmp_path / 'e', adjust_splits=True)
    assert [(x['symbol'], x['date'], x['ratio']) for x in adj.adjusted] == [('AAPL', '2005-02-28', '2:1')] and adj.meta['adjust_splits'] is True
    np.testing.assert_allclose(np.asarray(adj.features), np.asarray(a.features), rtol=1e-6)   # undone exactly: x2, then / 2
    off = build_store(tmp_path / 'split.csv', tmp_path / 'f', spike_threshold=math.inf)
    assert off.meta['spike_threshold'] is None and off.symbols == ['AAPL', 'IBM'] and off.adjusted == []

def test_panel_ambiguous_dates(stocks):
    long = two(stocks).groupby('symbol').head(5)
    long['date'] = pd.to_datetime(long.date).dt.strftime('%m/%d/%Y')
    with pytest.raises(DataError) as e: load_panel(long)
    assert "column 'date'" in str(e.value) and 'no day above 12' in str(e.value)


# ---- the experiment file ------------------------------------------------------------------------------------------------
EXPERIMENT = [
    ('exp-sep', {'sep': ':'}, ["data.sep must be one of ',', ';', '\\t', '|'", "':'"]),
    ('exp-decimal', {'decimal': 'x'}, ["data.decimal must be one of '.', ','", "'x'"]),
    ('exp-threshold-zero', {'spike_threshold': 0.0}, ['data.spike_threshold must be a number > 0 (inf: no spike or split checks)', '0.0']),
    ('exp-threshold-text', {'spike_threshold': 'high'}, ['data.spike_threshold must be a number', "'high' (a string)"]),
    ('exp-adjust-text', {'adjust_splits': 'yes'}, ['data.adjust_splits must be true or false', "'yes' (a string)"]),
    ('exp-misspelled', {'spike_treshold': 8.0}, ["unknown key 'data.spike_treshold'", 'did you mean data.spike_threshold']),
]

@pytest.mark.parametrize('case,data,needles', EXPERIMENT, ids=[c[0] for c in EXPERIMENT])
def test_experiment_keys(case, data, needles):
    with pytest.raises(ExperimentError) as e: experiment_from_dict({'data': data})
    for n in needles: assert n in str(e.value), f"{case}: {n!r} not in {str(e.value)!r}"

def test_experiment_keys_reach_the_loader(tmp_path):
    "The same keys in an experiment file load a user's file: `;`, decimal commas, a split adjusted"
    from trading_nb.pipeline import load_data
    exp = experiment_from_dict({'data': {'sep': ';', 'decimal': ',', 'adjust_splits': True}})
    p = write(tmp_path, scaled(RAW, 300, 0.25), sep=';', decimal=',')
    got, _ = load_data(p, exp.data.on_invalid, exp.data.adjust_splits, exp.data.spike_threshold, exp.data.sep, exp.data.decimal)
    assert got.attrs['adjusted'][0]['ratio'] == '4:1'


# ---- the command line -----------------------------------------------------------------------------------------------------
def run(*argv):
    from trading_nb.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()

def test_cli_summary(tmp_path):
    "trading-nb summary: a European file loads; a spike stops it (exit 2, one line); --on-invalid drop and --adjust-splits report; percentages"
    rc, out, _ = run('summary', '--data', write(tmp_path, RAW, 'euro.csv', sep=';', decimal=','))
    assert rc == 0 and 'total_return      +' in out and '%' in out.split('up_bars')[1].splitlines()[0] and 'timezone          none' in out
    spike = write(tmp_path, scaled(RAW, 300, 1000, 301), 'spike.csv')
    rc, _, err = run('summary', '--data', spike)
    assert rc == 2 and f"column 'close' has a one-bar spike at {DAY}" in err and 'Traceback' not in err
    rc, out, _ = run('summary', '--data', spike, '--on-invalid', 'drop')
    assert rc == 0 and 'dropped           1' in out and f"{DAY} column 'close' has a one-bar spike" in out
    rc, out, _ = run('summary', '--data', write(tmp_path, scaled(RAW, 300, 0.25), 'split.csv'), '--adjust-splits')
    assert rc == 0 and 'split-adjusted    1' in out and '4:1 split' in out
    rc, _, err = run('summary', '--data', write(tmp_path, RAW, 'semi.csv', sep=';'), '--sep', ',')
    assert rc == 2 and "--sep ';'" in err


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    "A tiny series model on synthetic bars, exported twice: with the default suspect-bar threshold, and as if trained on bars read with the checks off"
    from trading_nb.dataset import chronological_split
    from trading_nb.inference import export_model
    from trading_nb.model import ModelConfig, TradingModel
    from trading_nb.train import fit
    torch.set_num_threads(1)
    bars = make_synthetic(500, seed=3)
    train, val, _ = chronological_split(bars, lookback=20, horizon=1)
    model = TradingModel(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=2, lookback=20,
                                     conv_channels=8, hidden_size=8, indicator_hidden=8, head_hidden=8))
    fit(model, train, val, epochs=1, device='cpu', progress=False, seed=0)
    d = tmp_path_factory.mktemp('models')
    return export_model(model, d / 'default.pt', train, data=bars), export_model(model, d / 'off.pt', train, data=bars, spike_threshold=math.inf), bars

def test_cli_reading_flags(models, stocks, tmp_path):
    "predict, replay and evaluate read a user's file as train does: the model's own spike threshold by default, --spike-threshold, "
    "--on-invalid drop, --sep/--decimal; a feature store refuses them by name (its bars were read when it was built)"
    default, off, bars = models
    spike = bars.reset_index().copy()
    spike.loc[400, ['open', 'high', 'low', 'close']] *= 1000
    f = write(tmp_path, spike, 'spike.csv', sep=';', decimal=',')
    out = tmp_path / 'p.csv'
    rc, _, err = run('predict', '--model', default, '--data', f, '--out', out)
    assert rc == 2 and "column 'close' has a one-bar spike" in err, err
    rc, _, err = run('predict', '--model', off, '--data', f, '--out', out)   # trained with the checks off: the same default here
    assert rc == 0, err
    day = str(bars.index[400].date())
    rc, _, err = run('predict', '--model', default, '--data', f, '--out', out, '--spike-threshold', 'inf')
    assert rc == 0 and day in set(pd.read_csv(out)['date'].str[:10]), err     # the spike bar kept, as asked
    rc, _, err = run('predict', '--model', default, '--data', f, '--out', out, '--on-invalid', 'drop')
    assert rc == 0 and day not in set(pd.read_csv(out)['date'].str[:10]), err  # the spike bar dropped
    rc, _, err = run('replay', '--model', default, '--data', f, '--out', out, '--spike-threshold', 'inf', '--sep', ';', '--decimal', ',')
    assert rc == 0, err
    rc, _, err = run('evaluate', '--model', default, '--data', f)
    assert rc == 2 and "one-bar spike" in err, err
    rc, _, err = run('evaluate', '--model', default, '--data', f, '--on-invalid', 'drop')
    assert rc == 0, err
    from trading_nb.store import build_store
    two(stocks).to_csv(tmp_path / 'long.csv', index=False)
    build_store(tmp_path / 'long.csv', tmp_path / 'store')
    rc, _, err = run('predict', '--model', default, '--data', tmp_path / 'store', '--out', out, '--sep', ';', '--adjust-splits')
    assert rc == 2 and 'is a feature store' in err and '--adjust-splits, --sep do not apply here' in err and 'trading-nb features' in err, err

def test_cli_features_flags(stocks, tmp_path):
    "trading-nb features takes --sep, --decimal, --adjust-splits and --spike-threshold, and lists the splits it adjusted"
    long = two(stocks)
    m = (long.symbol == 'AAPL') & (long.date < '2005-02-28')
    long.loc[m, ['open', 'high', 'low', 'close']] *= 2
    long.loc[m, 'volume'] /= 2
    long.to_csv(tmp_path / 'split.csv', sep='|', index=False)
    rc, _, err = run('features', '--data', tmp_path / 'split.csv', '--store', tmp_path / 's', '--quiet')
    assert rc == 2 and 'a probable unadjusted 2:1 split' in err and '--adjust-splits' in err, err
    rc, out, err = run('features', '--data', tmp_path / 'split.csv', '--store', tmp_path / 's', '--quiet', '--adjust-splits', '--sep', '|')
    assert rc == 0 and 'adjusted: AAPL 2005-02-28 a probable unadjusted 2:1 split' in err, err

# ---- the live stream ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def im(models):
    "The tiny model (default threshold), loaded (its indicators warm up over 265 bars; the window is full from bar 285), and its bars"
    from trading_nb.inference import setup_inference
    default, _, bars = models
    return setup_inference(default, device='cpu'), bars

def feed(im, bars):
    from trading_nb.inference import StreamState
    st = StreamState(im)
    return st, [st.update((t, row)) for t, row in bars.iterrows()]

def test_stream_spike_rejected(im):
    "A streamed print x1000 is answered as rejected with the reason; the next bar is taken as if it had not come"
    model, bars = im
    bad = bars.copy()
    bad.iloc[400, :4] *= 1000
    st, answers = feed(model, bad)
    assert answers[400]['status'] == 'rejected' and answers[400]['reason'].startswith('close ') and 'a one-bar spike?' in answers[400]['reason']
    assert answers[401]['status'] == 'ok' and st.rejected == 1
    _, clean = feed(model, bars.drop(bars.index[400]))
    assert [a['p_up'] for a in answers[401:]] == pytest.approx([a['p_up'] for a in clean[400:]], abs=1e-6)

def test_stream_new_level_taken(im):
    "A new level (an unadjusted 4:1 split arriving live) costs one bar: rejected once, then taken; the guard survives a snapshot"
    from trading_nb.inference import StreamState
    model, bars = im
    split = bars.copy()
    split.iloc[400:, :4] /= 4
    st, answers = feed(model, split)
    assert [a['status'] for a in answers[400:402]] == ['rejected', 'ok'] and st.rejected == 1
    again = StreamState.from_state_dict(model, st.state_dict())
    assert again.guard.state_dict() == st.guard.state_dict()


def test_matrix_size():
    "The matrix has at least 40 cases (the README's table lists them)"
    n = len(LOADS) + 1 + len(REFUSED) + 2 + len(TIMEZONES) + 5 + 3 + len(EXPERIMENT) + 1 + 1 + 2 + 2 + 2
    assert n >= 40, n


def test_front_page_description_whole():
    "The docs site's description is the title cell's blockquote, read as one line: every notebook's is one line (the front page's was cut mid-sentence)"
    import json
    for p in sorted((Path(__file__).resolve().parents[1] / 'nbs').glob('*.ipynb')):
        title = next(''.join(c['source']) for c in json.loads(p.read_text())['cells'] if c['cell_type'] == 'markdown' and ''.join(c['source']).lstrip().startswith('# '))
        quote = [l for l in title.splitlines() if l.startswith('>')]
        assert len(quote) <= 1, f"{p.name}: the description blockquote spans {len(quote)} lines; nbdev keeps the first: {quote[0]!r}"
