"End to end through the installed `trading-nb` command: train, predict, replay, evaluate, report, and bad input."
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trading_nb.data import make_synthetic

EXE = str(Path(sys.executable).parent / "trading-nb")

def cli(*args, cwd=None):
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    "One small training run on synthetic bars with a planted signal, shared by the tests"
    d = tmp_path_factory.mktemp("cli")
    make_synthetic(1400, seed=11).to_csv(d / "bars.csv", index_label="Date")
    r = cli("train", "--data", d / "bars.csv", "--out", d / "run", "--epochs", "2", "--lookback", "20", "--seed", "3", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    return d, r

def test_train_writes_the_run(run):
    d, r = run
    for f in ("model.pt", "metrics.json", "report.html", "history.csv", "test_predictions.csv", "equity.csv"): assert (d / "run" / f).exists(), f
    m = json.loads((d / "run" / "metrics.json").read_text())
    assert {"model", "baselines", "backtest"} <= set(m)
    assert set(m["baselines"]) == {"majority", "previous_move", "logistic", "hist_gbm"}
    for entry in [m["model"], *m["baselines"].values()]:
        assert 0 <= entry["accuracy"] <= 1 and entry["accuracy_ci"][0] <= entry["accuracy"] <= entry["accuracy_ci"][1]
        assert "auc" in entry
    assert {"strategy", "buy_hold"} <= set(m["backtest"])
    assert "model" in r.stdout and "hist_gbm" in r.stdout and "report:" in r.stdout
    html = (d / "run" / "report.html").read_text()
    assert "plotly" in html and "Verdict" in html and "hist_gbm" in html and "http" not in html.split("<body>")[0]
    ck = torch.load(d / "run" / "model.pt", weights_only=True)   # safe to load: no pickled objects
    assert ck["format"] == "trading_nb.model/1"

def test_predict_and_replay_agree(run):
    d, _ = run
    assert cli("predict", "--model", d / "run" / "model.pt", "--data", d / "bars.csv", "--out", d / "p.csv").returncode == 0
    r = cli("replay", "--model", d / "run" / "model.pt", "--data", d / "bars.csv", "--out", d / "r.csv")
    assert r.returncode == 0, r.stderr
    p, s = pd.read_csv(d / "p.csv", index_col=0), pd.read_csv(d / "r.csv", index_col=0)
    assert list(p.columns) == list(s.columns) == ["p_down", "p_up", "signal"]
    assert list(p.index) == list(s.index) and len(p) == 1400 - 265 - 20 + 1   # every bar after warm-up and one window
    np.testing.assert_allclose(p[["p_down", "p_up"]], s[["p_down", "p_up"]], atol=1e-5)
    assert (p.signal == s.signal).mean() > 0.999

def test_evaluate_and_report(run):
    d, _ = run
    r = cli("evaluate", "--model", d / "run" / "model.pt", "--data", d / "bars.csv", "--out", d / "ev")
    assert r.returncode == 0, r.stderr
    assert json.loads((d / "ev" / "evaluation.json").read_text())["model"]["accuracy"] > 0
    (d / "run" / "report.html").unlink()
    assert cli("report", "--run", d / "run").returncode == 0 and (d / "run" / "report.html").exists()

def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for n in needles: assert n in r.stderr, r.stderr

def test_truncated_checkpoint(run, tmp_path):
    d, _ = run
    cut = tmp_path / "cut.pt"
    cut.write_bytes((d / "run" / "model.pt").read_bytes()[:4096])
    one_line_error(cli("predict", "--model", cut, "--data", d / "bars.csv", "--out", tmp_path / "x.csv"), "cut.pt")
    assert not (tmp_path / "x.csv").exists()

def test_bad_csv_through_the_cli(run, tmp_path):
    d, _ = run
    bad = tmp_path / "bad.csv"
    lines = (d / "bars.csv").read_text().splitlines()
    cells = lines[500].split(","); cells[4] = "oops"; lines[500] = ",".join(cells)
    bad.write_text("\n".join(lines) + "\n")
    one_line_error(cli("predict", "--model", d / "run" / "model.pt", "--data", bad, "--out", tmp_path / "x.csv"), "'close'", "'oops'", cells[0][:10])
    one_line_error(cli("train", "--data", bad, "--out", tmp_path / "run"), "'oops'")
    one_line_error(cli("summary", "--data", tmp_path / "missing.csv"), "missing.csv")

def test_hourly_bars_into_a_daily_model_are_refused(run, tmp_path):
    d, _ = run
    make_synthetic(600, seed=2, freq="h").to_csv(tmp_path / "hourly.csv", index_label="Date")
    one_line_error(cli("predict", "--model", d / "run" / "model.pt", "--data", tmp_path / "hourly.csv", "--out", tmp_path / "x.csv"))

def test_help():
    r = cli("--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("train", "predict", "replay", "evaluate", "report"))
    r = cli("train", "--help")
    assert "--lookback" in r.stdout and "--device" in r.stdout

def test_parser_starts_without_torch():
    "`trading-nb --help` and argument errors answer without importing torch (seconds saved on every mistyped command)"
    code = "import sys, trading_nb.cli as c; c.build_parser(); print(sorted(m for m in ('torch', 'lightgbm', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == '[]', out
