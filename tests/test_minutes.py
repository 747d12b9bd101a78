"""Minute bars from a feature store, end to end through the command line: `trading-nb features` (local and Ray),
then `trading-nb train --data STORE` with steps per epoch. The cross-section is per timestamp, the book is annualised
from the bars the calendar holds (sessions and their overnight gaps), and the run counts the targets that span a night."""
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from trading_nb.store import write_synthetic_minutes

EXE = str(Path(sys.executable).parent / "trading-nb")
SESSIONS = 60


def cli(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("minutes")
    write_synthetic_minutes(d / "bars", n_symbols=6, n_bars=390 * SESSIONS, seed=3)
    r = cli("features", "--data", d / "bars", "--store", d / "store", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    r = cli("train", "--data", d / "store", "--out", d / "run", "--epochs", "2", "--steps-per-epoch", "15", "--lookback", "30", "--quiet",
            "--threads", "1", "--set", "model.hidden_size=16", "--set", "model.conv_channels=8", "--set", "model.indicator_hidden=8",
            "--set", "model.head_hidden=8", "--set", "evaluation.n_boot=100", "--set", "evaluation.baseline_windows=20000")
    assert r.returncode == 0, r.stderr[-3000:]
    return d, r.stdout, json.loads((d / "run" / "metrics.json").read_text())


def test_the_store_says_what_it_holds(run):
    d, _, m = run
    meta = json.loads((d / "store" / "meta.json").read_text())
    index = json.loads((d / "store" / "index.json").read_text())
    assert len(index["symbols"]) == 6 and meta["dtype"] == "float32"
    rows = sum(s["rows"] for s in index["symbols"])
    assert (d / "store" / "features.bin").stat().st_size == rows * len(meta["feature_names"]) * 4   # row-major float32, nothing else
    assert m["data"]["store"]["rows"] == rows and m["data"]["baseline_windows"] == 20000             # the baselines saw a bounded sample


def test_minutes_are_judged_per_timestamp_and_annualised_by_the_calendar(run):
    d, out, m = run
    g = m["data"]["gaps"]
    assert g["bar_spacing"] == "0 days 00:01:00"
    assert 0 < g["spanning_gap"] and g["share"] == pytest.approx(1 / 390, rel=0.5)   # the session's last bar: its target is the next morning
    ppy = m["portfolio"]["periods_per_year"]
    assert 390 * 240 < ppy < 390 * 270, ppy   # sessions of 390 minutes, ~260 weekdays a year: not 24 x 60 x 365
    assert m["model"]["n_dates"] > 1000       # one cross-section per minute
    assert "Bars are 00:01:00 apart" in out and "a night" in out


def test_steps_per_epoch_checkpoint_and_validate(run):
    d, _, m = run
    hist = (d / "run" / "history.csv").read_text().splitlines()
    assert hist[0].split(",")[:1] == ["epoch"] and "step" in hist[0]
    steps = [int(r.split(",")[hist[0].split(",").index("step")]) for r in hist[1:]]
    assert steps == [15, 30][:len(steps)] and m["training"]["epochs_run"] == len(steps)


def test_a_ray_build_is_the_local_build(run, tmp_path):
    "The same command on Ray (a local cluster started by ray.init): the same bytes"
    pytest.importorskip("ray")
    d, _, _ = run
    r = cli("features", "--data", d / "bars", "--store", tmp_path / "ray", "--engine", "ray", "--quiet")
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ("features.bin", "dates.bin", "close.bin", "index.json"):
        assert (tmp_path / "ray" / f).read_bytes() == (d / "store" / f).read_bytes(), f
    assert "ray" in r.stdout


def test_bad_store_input_is_one_line(run, tmp_path):
    d, _, _ = run
    r = cli("features", "--data", d / "bars", "--store", d / "store")
    assert r.returncode == 2 and "a store exists already" in r.stderr and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    r = cli("predict", "--model", d / "run" / "model.pt", "--data", d / "store", "--out", tmp_path / "p.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    head = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert head[:2] == ["symbol", "date"] and "p_up" in head


def test_evaluate_reads_the_store_in_chunks(run):
    "`trading-nb evaluate --data STORE --start TEST_START`: the run's test period judged again from the exported model, the same figures"
    d, _, m = run
    r = cli("evaluate", "--model", d / "run" / "model.pt", "--data", d / "store", "--start", m["data"]["test"][0], "--out", d / "ev", "--seed", 0)
    assert r.returncode == 0, r.stderr[-3000:]
    ev = json.loads((d / "ev" / "evaluation.json").read_text())
    assert ev["windows"] == m["data"]["test"][2]                                 # the test windows, no more
    assert abs(ev["model"]["auc"] - m["model"]["auc"]) < 1e-4
    assert abs(ev["model"]["rank_ic"] - m["model"]["rank_ic"]) < 1e-4             # after the signal, on the tradable names, as in training
    assert ev["portfolio"]["execution"] == "next_open" and "tradable names: rank IC" in r.stdout


def test_minute_ics_aggregated_to_days(run, tmp_path):
    "`--aggregate day`: each day's intraday ICs averaged first, so the intervals are over days (as daily research reads them)"
    d, _, m = run
    r = cli("train", "--data", d / "store", "--out", tmp_path / "day", "--epochs", "1", "--steps-per-epoch", "5", "--lookback", "30", "--quiet",
            "--threads", "1", "--aggregate", "day", "--set", "model.hidden_size=16", "--set", "model.conv_channels=8", "--set", "model.indicator_hidden=8",
            "--set", "model.head_hidden=8", "--set", "evaluation.n_boot=100", "--set", "evaluation.baseline_windows=20000")
    assert r.returncode == 0, r.stderr[-3000:]
    md = json.loads((tmp_path / "day" / "metrics.json").read_text())
    assert 1 < md["model"]["n_dates"] <= SESSIONS                   # one IC per day of the test period
    assert m["model"]["n_dates"] > 10 * md["model"]["n_dates"]        # the per-minute run has many more cross-sections
    assert md["cross_sectional_verdict"].rstrip(".").split(" over ")[1].split(" ")[1].startswith("days")
