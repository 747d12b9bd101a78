"""End to end through `trading-nb train`: a simulated illiquid panel where bid-ask bounce looks like a signal.

The true prices are random walks; trades print at the bid or the ask at random, some bars trade nothing (the close
repeats, volume 0) and some names barely trade. Reversing the last move then "works" at the close and earns nothing
a practitioner could have: bought at the next open, paying half the spread, within the names that trade."""
import json, subprocess, sys
from pathlib import Path

import pytest

from trading_nb.backtest import make_illiquid_panel

TINY = ["--epochs", "2", "--lookback", "10", "--quiet", "--min-symbols", "30", "--set", "model.hidden_size=16", "--set", "model.conv_channels=8",
        "--set", "model.indicator_hidden=8", "--set", "model.head_hidden=8", "--set", "evaluation.n_boot=100", "--set", "data.cache_dir=none",
        "--threads", "1"]


def train(d: Path, name: str, *flags) -> tuple[dict, str]:
    r = subprocess.run([str(Path(sys.executable).parent / "trading-nb"), "train", "--data", str(d / "ill.csv"), "--out", str(d / name), *TINY, *flags],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((d / name / "metrics.json").read_text()), r.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("illiquid")
    make_illiquid_panel(n_symbols=30, n=600, seed=1)[["open", "high", "low", "close", "volume"]].reset_index().to_csv(d / "ill.csv", index=False)
    naive = train(d, "naive", "--execution", "close", "--costs", "bps", "--max-stale", "21")   # the old book: at the close, 1 bp, every name
    real = train(d, "real", "--min-traded-value", "10000")                                      # the defaults, and a traded-value floor
    return d, naive, real


def test_the_bounce_looks_excellent_at_the_close(runs):
    _, (m, out), _ = runs
    rev = m["baselines"]["reversal"]
    assert rev["rank_ic"] > 0.1 and rev["long_short"]["sharpe"] > 3, rev   # reversing the last move "works" at the close
    pf = m["portfolio"]
    assert (pf["execution"], pf["costs"]["model"], pf["costs"]["cost_bps"]) == ("close", "bps", 1.0)
    assert "at the signal bar's own close (no one could trade there" in out
    d = pf["diagnostics"]
    assert d["lag1_autocorr"] < -0.05 and d["stale_share"] > 0.05 and d["spread_median"] > 0.005   # what the warnings would name
    model = pf["long_short"]["sharpe"]
    if model > 3 or m["model"]["rank_ic"] > 0.1:   # the model learned the bounce (as it did here): the run must say it is suspect
        assert m["warnings"] and all(w.startswith(("Too good to be true?", "Untradeable")) for w in m["warnings"]), m["warnings"]
        assert "WARNING: Too good to be true?" in out and "lag-1 autocorrelation" in out
        assert "Warning.</b> Too good to be true?" in (runs[0] / "naive" / "report.html").read_text()


def test_traded_after_the_signal_it_earns_nothing(runs):
    _, (naive, _), (m, out) = runs
    pf = m["portfolio"]
    assert (pf["execution"], pf["costs"]["model"]) == ("next_open", "spread")
    assert pf["universe"]["tradable_share"] < 0.6 and pf["universe"]["excluded_per_date_mean"] > 5   # most of these names barely trade
    assert pf["cost_per_unit"] > 10e-4                                                                # spreads cost tens of bp, not 1
    rev = m["baselines"]["reversal"]
    assert rev["long_short"]["annual_return"] < 0 < naive["baselines"]["reversal"]["long_short"]["annual_return"]
    assert pf["long_short"]["annual_return"] < naive["portfolio"]["long_short"]["annual_return"]
    assert not [w for w in m["warnings"] if w.startswith("Too good to be true? An annual Sharpe")]
    assert "Tradable universe (a median traded value above 10,000" in out and "Capacity: " in out
    html = (runs[0] / "real" / "report.html").read_text()
    assert "for contrast" in html and "outside the tradable universe" in html
    preds = (runs[0] / "real" / "test_predictions.csv").read_text().splitlines()[0].split(",")
    assert {"exec_return", "tradable", "half_spread", "reversal_score"} <= set(preds)
