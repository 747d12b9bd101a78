"The data stage's bad-input matrix (through real files, as a user meets it) and its packaging."
import os, subprocess, sys, warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trading_nb.data import DataError, load_ohlcv, load_sample, make_synthetic, sample_path, validate_ohlcv

ROOT = Path(__file__).resolve().parents[1]
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"
GOOD = [
    "2020-01-02,10,12,9,11,11,100",
    "2020-01-03,11,13,10,12,12,200",
    "2020-01-06,12,14,11,13,13,300",
    "2020-01-07,13,15,12,14,14,400",
]

def csv(tmp_path, rows, header=HEADER, name="bars.csv"):
    p = tmp_path / name
    p.write_text("\n".join([header] + rows) + "\n")
    return p

def row(i, **kw):
    "GOOD row `i` with some fields replaced"
    cols = HEADER.split(",")
    vals = dict(zip(cols, GOOD[i].split(",")))
    vals.update({k.replace("_", " "): str(v) for k, v in kw.items()})
    return ",".join(vals[c] for c in cols)

# (case id, rows, header, substrings the message must contain)
BAD = [
    ("missing-column", [r.rsplit(",", 1)[0] for r in GOOD], "Date,Open,High,Low,Close,Adj Close", ["missing column 'volume'"]),
    ("missing-two-columns", [",".join(r.split(",")[:3]) for r in GOOD], "Date,Open,High", ["'low'", "'close'", "'volume'"]),
    ("text-in-number", [GOOD[0], row(1, Close="abc"), *GOOD[2:]], HEADER, ["'close'", "'abc'", "2020-01-03", "non-numeric"]),
    ("yahoo-null", [GOOD[0], row(1, Open="null"), *GOOD[2:]], HEADER, ["'open'", "'null'", "2020-01-03"]),
    ("nan", [GOOD[0], GOOD[1], row(2, Close=""), GOOD[3]], HEADER, ["'close'", "NaN", "2020-01-06"]),
    ("inf", [GOOD[0], row(1, High="inf"), *GOOD[2:]], HEADER, ["'high'", "inf", "2020-01-03"]),
    ("zero-price", [GOOD[0], row(1, Low=0), *GOOD[2:]], HEADER, ["'low'", "non-positive", "2020-01-03", "0.0"]),
    ("negative-price", [*GOOD[:3], row(3, Adj_Close=-14)], HEADER, ["'adj_close'", "non-positive", "2020-01-07", "-14.0"]),
    ("negative-volume", [row(0, Volume=-1), *GOOD[1:]], HEADER, ["'volume'", "negative", "2020-01-02", "-1.0"]),
    ("high-below-low", [GOOD[0], row(1, High=9.5, Low=10, Open=10, Close=10), *GOOD[2:]], HEADER, ["'high' is below 'low'", "2020-01-03", "high=9.5", "low=10.0"]),
    ("high-below-open", [GOOD[0], row(1, Open=13.5), *GOOD[2:]], HEADER, ["'high' is below 'open'", "2020-01-03", "open=13.5"]),
    ("high-below-close", [GOOD[0], row(1, Close=13.5), *GOOD[2:]], HEADER, ["'high' is below 'close'", "2020-01-03", "close=13.5"]),
    ("low-above-open", [GOOD[0], row(1, Open=9.5), *GOOD[2:]], HEADER, ["'low' is above 'open'", "2020-01-03", "open=9.5"]),
    ("low-above-close", [GOOD[0], row(1, Close=9.5), *GOOD[2:]], HEADER, ["'low' is above 'close'", "2020-01-03", "close=9.5"]),
    ("duplicate-timestamp", [GOOD[0], GOOD[1], row(2, Date="2020-01-03"), GOOD[3]], HEADER, ["duplicate timestamp", "2020-01-03", "2 rows"]),
    ("unparseable-date", [GOOD[0], row(1, Date="2020-13-45"), *GOOD[2:]], HEADER, ["unparseable timestamp", "'2020-13-45'", "'Date'", "row 1"]),
    ("missing-date", [GOOD[0], row(1, Date=""), *GOOD[2:]], HEADER, ["missing timestamp", "'Date'", "row 1"]),
    ("no-date-column", [r.split(",", 1)[1] for r in GOOD], "Open,High,Low,Close,Adj Close,Volume", ["no timestamp column", "Open"]),
    ("header-only", [], HEADER, ["no rows"]),
    ("same-column-twice", [r + ",1" for r in GOOD], HEADER + ",close", ["'close' appears more than once", "Close"]),
]

@pytest.mark.parametrize("case,rows,header,needles", BAD, ids=[b[0] for b in BAD])
def test_bad_csv(tmp_path, case, rows, header, needles):
    p = csv(tmp_path, rows, header)
    with pytest.raises(DataError) as e: load_ohlcv(p)
    for n in needles: assert n in str(e.value), f"{case}: {n!r} not in {str(e.value)!r}"

def test_every_message_names_a_row_when_a_row_is_at_fault(tmp_path):
    "Value errors carry the row number and the count, so the user can find all of them"
    p = csv(tmp_path, [row(0, Volume=-1), row(1, Volume=-2), *GOOD[2:]])
    with pytest.raises(DataError, match=r"row 0.*2 rows in all"): load_ohlcv(p)

@pytest.mark.parametrize("name,content,needle", [
    ("empty.csv", "", "the file is empty"),
    ("blank.csv", "\n\n", "empty"),
    ("bars.xlsx", "not a spreadsheet", "unsupported file type .xlsx"),
    ("bars.json", "{}", "unsupported file type .json"),
    ("noext", "Date,Open\n", "unsupported file type (none)"),
    ("bars.parquet", "this is not parquet", "not a readable Parquet file"),
])
def test_bad_files(tmp_path, name, content, needle):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(DataError, match=None) as e: load_ohlcv(p)
    assert needle in str(e.value) and str(p) in str(e.value)

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"): load_ohlcv(tmp_path / "nope.csv")

def test_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="is a folder"): load_ohlcv(tmp_path)

def test_too_few_rows(tmp_path):
    with pytest.raises(DataError, match="4 rows, but at least 10 are needed"): load_ohlcv(csv(tmp_path, GOOD), min_rows=10)

@pytest.mark.parametrize("frame,needle", [
    (pd.DataFrame({"close": [1.0]}), "DatetimeIndex"),
    ("not a frame", "expected a DataFrame"),
    (pd.DataFrame({c: ["1"] for c in ["open", "high", "low", "close", "volume"]}, index=pd.DatetimeIndex(["2020-01-01"])), "column 'open' is not numeric"),
    (pd.DataFrame({c: [1.0, 1.0] for c in ["open", "high", "low", "close", "volume"]}, index=pd.DatetimeIndex(["2020-01-02", "2020-01-01"])), "not sorted"),
    (pd.DataFrame({c: [1.0, 1.0] for c in ["open", "high", "low", "close", "volume"]}, index=pd.DatetimeIndex(["2020-01-02", None])), "missing timestamp (NaT)"),
])
def test_validate_frames(frame, needle):
    with pytest.raises(DataError) as e: validate_ohlcv(frame)
    assert needle in str(e.value)

def test_nothing_dropped_or_filled_on_success(tmp_path):
    shuffled = [GOOD[2], GOOD[0], GOOD[3], GOOD[1]]
    with pytest.warns(UserWarning, match="sorted 4 rows by time, none dropped"): df = load_ohlcv(csv(tmp_path, shuffled))
    assert len(df) == 4 and df.index.is_monotonic_increasing
    assert df.close.tolist() == [11.0, 12.0, 13.0, 14.0]
    assert not df.isna().any().any()

def test_spellings_and_formats_agree(tmp_path):
    ref = load_ohlcv(csv(tmp_path, GOOD))
    lower = csv(tmp_path, GOOD, HEADER.lower(), "lower.csv")
    ts = csv(tmp_path, [f"{int(pd.Timestamp(r.split(',')[0]).timestamp())}," + r.split(",", 1)[1] for r in GOOD], "timestamp,open,high,low,close,adj_close,volume", "epoch.csv")
    gz = tmp_path / "bars.csv.gz"
    pd.read_csv(csv(tmp_path, GOOD)).to_csv(gz, index=False)
    pq = tmp_path / "bars.parquet"
    pd.read_csv(csv(tmp_path, GOOD), parse_dates=["Date"]).set_index("Date").to_parquet(pq)
    for p in (lower, gz, pq):
        got = load_ohlcv(p)
        pd.testing.assert_frame_equal(got, ref, check_index_type=False, check_freq=False)
    got = load_ohlcv(ts)   # epoch seconds are UTC
    assert str(got.index.tz) == "UTC" and (got.index.tz_localize(None) == ref.index).all()

def test_intraday_timezones(tmp_path):
    rows = [f"2024-03-08 {h:02d}:00:00-05:00," + r.split(",", 1)[1] for h, r in zip(range(10, 14), GOOD)]
    df = load_ohlcv(csv(tmp_path, rows, HEADER.replace("Date", "Datetime")))
    assert str(df.index[0]) == "2024-03-08 10:00:00-05:00"
    utc = load_ohlcv(csv(tmp_path, rows, HEADER.replace("Date", "Datetime")), tz="UTC")
    assert utc.index[0] == pd.Timestamp("2024-03-08 15:00", tz="UTC")

def test_samples_and_synthetic():
    for name in ("sp500", "nasdaq"):
        df = load_sample(name)
        assert len(df) == 5031 and df.index.is_monotonic_increasing
    syn = make_synthetic(500, seed=7, freq="5min")
    assert validate_ohlcv(syn) is syn and 0.5 < syn.attrs["best_accuracy"] < 0.8

def test_load_sample_from_an_installed_wheel(tmp_path):
    "The bundled data travels in the wheel (trading_nb/sample_data), not only in a checkout"
    whl, target = tmp_path / "whl", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(whl), str(ROOT)], check=True, capture_output=True)
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), *map(str, whl.glob("*.whl"))], check=True, capture_output=True)
    code = "import trading_nb.data as d; p = d.sample_path('nasdaq'); print(p); print(len(d.load_sample('nasdaq')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(target)},
                         check=True, capture_output=True, text=True).stdout.split()
    assert out[0].startswith(str(target)), out
    assert out[1] == "5031"
