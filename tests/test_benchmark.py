"""`trading-nb benchmark` end to end: 2 model kinds x 2 seeds on a tiny panel, killed after its first run, then resumed without
retraining what was finished; the table complete. (The functions' own tests are in nbs/09a_benchmark.ipynb.)"""
import json, os, signal, subprocess, sys, time
from pathlib import Path

from trading_nb.data import make_synthetic_panel

EXE = str(Path(sys.executable).parent / "trading-nb")
TINY = """
[data]
cache_dir = "none"
[features]
lookback = 20
[model]
conv_channels = 8
hidden_size = 16
num_layers = 1
n_heads = 2
indicator_hidden = 8
head_hidden = 8
[training]
epochs = 1
threads = 1
[evaluation]
n_boot = 50
"""
ARGS = ["benchmark", "--config", "exp.toml", "--data", "panel.csv", "--models", "hybrid,lstm", "--seeds", "2", "--out", "bench", "--quiet"]
WRITTEN = ("metrics.json", "model.pt", "history.csv", "equity.csv", "test_predictions.csv", "importance.csv", "config.toml")


def test_benchmark_resumes_after_a_kill(tmp_path):
    d = tmp_path
    make_synthetic_panel(6, 500, seed=2).reset_index().to_csv(d / "panel.csv", index=False)
    (d / "exp.toml").write_text(TINY)
    first = d / "bench" / "hybrid" / "seed0"
    with open(d / "killed.log", "w") as log:
        p = subprocess.Popen([EXE, *ARGS], cwd=d, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            give_up = time.monotonic() + 900   # a guard against a hang, not a timing assertion
            while not (first / "metrics.json").exists():   # the first run has finished ...
                assert p.poll() is None, (d / "killed.log").read_text()[-3000:]
                assert time.monotonic() < give_up, "the first run never finished"
                time.sleep(0.02)
        finally:
            os.killpg(p.pid, signal.SIGKILL)   # ... and the benchmark dies at once, as a killed job does
            p.wait(60)
    assert not (d / "bench" / "benchmark.json").exists()   # it never got to the table
    before = {f: (first / f).stat().st_mtime_ns for f in WRITTEN}

    r = subprocess.run([EXE, *ARGS], cwd=d, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[1/4] hybrid seed 0: finished earlier, kept" in r.stderr
    assert {f: (first / f).stat().st_mtime_ns for f in WRITTEN} == before   # the finished run was not retrained or rewritten
    for line in ("[2/4] hybrid seed 1: ", "[3/4] lstm seed 0: trained", "[4/4] lstm seed 1: trained"): assert line in r.stderr, r.stderr

    s = json.loads((d / "bench" / "benchmark.json").read_text())
    assert s["models"] == ["hybrid", "lstm"] and s["seeds"] == [0, 1] and s["headline"] == "rank_ic"
    for kind in ("hybrid", "lstm"):
        res = s["results"][kind]
        assert res["runs"] == [f"{kind}/seed0", f"{kind}/seed1"]
        for f in ("ic", "icir", "rank_ic", "rank_icir", "annual_return", "ir", "accuracy", "auc", "train_seconds", "parameters"):
            assert len(res[f]["values"]) == 2 and None not in res[f]["values"] and res[f]["std"] is not None, (kind, f)
        for seed in (0, 1):
            m = json.loads((d / "bench" / kind / f"seed{seed}" / "metrics.json").read_text())
            assert m["training"]["seed"] == seed and m["model"]["rank_ic"] == res["rank_ic"]["values"][seed]
            assert f'kind = "{kind}"' in (d / "bench" / kind / f"seed{seed}" / "config.toml").read_text()
    md = (d / "bench" / "benchmark.md").read_text()
    assert "| hybrid |" in md and "| lstm |" in md and "2 model kinds x 2 seeds" in md and "4 runs on their test periods are 4 looks" in md
    assert md in r.stdout and "benchmark.html" in r.stdout
    assert "plotly" in (d / "bench" / "benchmark.html").read_text()

    again = subprocess.run([EXE, *ARGS], cwd=d, capture_output=True, text=True, timeout=900)   # all finished: nothing trained
    assert again.returncode == 0 and again.stderr.count("finished earlier, kept") == 4, again.stderr
    assert json.loads((d / "bench" / "benchmark.json").read_text())["results"] == s["results"]


def test_benchmark_refuses_an_unknown_kind(tmp_path):
    r = subprocess.run([EXE, "benchmark", "--models", "hybrid,xgboost", "--out", str(tmp_path / "b")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown model kind 'xgboost' in --models; choose from hybrid, lstm" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()
