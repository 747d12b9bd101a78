"""torchrun + DistributedDataParallel on the CPU with gloo: 2 processes (CI has 2 cores).

What a notebook cannot show, because it needs real processes: one DDP step equals one process's step,
the command line under torchrun, a two-"node" rendezvous, resuming, a rank that dies, and a backend
that cannot work here.
"""
import json, os, socket, subprocess, sys
from pathlib import Path
import pytest
import torch

from trading_nb.data import make_synthetic, make_synthetic_panel

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / 'tests' / 'ddp_job.py'
CLI = Path(sys.executable).parent / 'trading-nb'
TIMEOUT = 600   # seconds; a hang fails the test instead of the whole run


def torchrun(*args, nproc: int = 2, extra=(), timeout: int = TIMEOUT, env=None) -> subprocess.CompletedProcess:
    "torchrun --standalone with `nproc` processes"
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', *extra, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def plain(*args, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-6000:]}"
    return p


def result(folder: Path) -> dict:
    return torch.load(folder / 'result.pt', weights_only=True)


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_one_ddp_step_equals_one_process(tmp_path):
    "2 ranks x 32 windows (sharded, synced batch norm, class-weighted loss) == 1 process x the same 64 windows"
    ok(plain(JOB, 'step', '--out', tmp_path / 'one'))
    ok(torchrun(JOB, 'step', '--out', tmp_path / 'two'))
    one, two = result(tmp_path / 'one'), result(tmp_path / 'two')
    assert (one['world'], two['world']) == (1, 2)
    assert (one['local'], two['local']) == (64, 32) and one['samples'] == two['samples'] == 64
    assert abs(one['loss'] - two['loss']) < 1e-6
    assert max_diff(one['state'], two['state']) < 1e-6


def test_synced_batchnorm_is_batchnorm_of_the_whole_batch(tmp_path):
    "Unequal shards (6 and 4 of 10): outputs, input and weight gradients, running statistics as BatchNorm1d on all 10"
    ok(torchrun(JOB, 'bn', '--out', tmp_path))
    r = result(tmp_path)
    assert r['world'] == 2
    for k in ('y_err', 'xgrad_err', 'mean_err', 'var_err', 'wgrad_err'): assert r[k] < 1e-5, (k, r[k])


def test_resume_under_torchrun_gives_the_uninterrupted_weights(tmp_path):
    "A 2-rank run killed after epoch 1 and resumed from last.pt ends with the weights of an uninterrupted one (dropout on)"
    ok(torchrun(JOB, 'fit', '--out', tmp_path / 'full', '--epochs', 3))
    died = torchrun(JOB, 'fit', '--out', tmp_path / 'cut', '--epochs', 3, '--stop-after', 1)
    assert died.returncode != 0 and (tmp_path / 'cut' / 'checkpoints' / 'last.pt').exists()
    ck = torch.load(tmp_path / 'cut' / 'checkpoints' / 'last.pt', weights_only=True)
    assert ck['epoch'] == 1 and ck['world_size'] == 2 and len(ck['rng_ranks']) == 2
    assert not torch.equal(ck['rng_ranks'][0], ck['rng_ranks'][1])   # each rank its own dropout stream
    ok(torchrun(JOB, 'fit', '--out', tmp_path / 'cut', '--epochs', 3, '--resume'))
    full, cut = result(tmp_path / 'full'), result(tmp_path / 'cut')
    assert full['world'] == cut['world'] == 2 and full['backend'] == 'gloo'
    assert all(torch.equal(full['state'][k], cut['state'][k]) for k in full['state'])
    assert full['history']['val_loss'] == cut['history']['val_loss']


@pytest.fixture(scope='module')
def series_csv(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp('data') / 'series.csv'
    make_synthetic(700, seed=5).to_csv(p)
    return p


def train_args(data: Path, out: Path, *more) -> list:
    return ['--no-python', CLI, 'train', '--data', data, '--out', out, '--epochs', 2, '--lookback', 20, '--device', 'cpu', '--quiet', *more]


def test_cli_train_with_two_ranks(tmp_path, series_csv):
    "`torchrun ... trading-nb train`: rank 0 alone reports and writes; the windows are those of one process"
    one = ok(subprocess.run(list(map(str, train_args(series_csv, tmp_path / 'one')[1:])), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT))
    two = ok(torchrun(*train_args(series_csv, tmp_path / 'two')))
    assert two.stdout.count('report:') == 1 and two.stdout.count('verdict') <= one.stdout.count('verdict')
    m1, m2 = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('one', 'two'))
    assert (m1['training']['world_size'], m1['training']['backend']) == (1, None)
    assert (m2['training']['world_size'], m2['training']['backend']) == (2, 'gloo')
    for part in ('train', 'val', 'test'): assert m1['data'][part] == m2['data'][part]
    assert sorted(p.name for p in (tmp_path / 'one').iterdir()) == sorted(p.name for p in (tmp_path / 'two').iterdir())
    n_pred = sum(1 for _ in open(tmp_path / 'two' / 'test_predictions.csv')) - 1
    assert n_pred == m2['data']['test'][2]   # every test window once, gathered from both ranks


def test_cli_panel_features_once_per_machine(tmp_path):
    "On a panel, local rank 0 computes the features into the cache and rank 1 reads them"
    p = tmp_path / 'panel.csv'
    make_synthetic_panel(n_symbols=4, n=420, seed=1).reset_index().to_csv(p, index=False)
    ok(torchrun(*train_args(p, tmp_path / 'run', '--epochs', 1, '--cache-dir', tmp_path / 'cache')))
    m = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert m['data']['feature_cache_hits'] == [False, True]
    assert len(list((tmp_path / 'cache').glob('*.parquet'))) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_nodes_rendezvous_on_localhost(tmp_path):
    "Two torchrun launches (nnodes=2, nproc 1 each) meet through the c10d rendezvous and train one model"
    port = free_port()
    args = [sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', '--nproc_per_node=1', '--rdzv-backend=c10d',
            f'--rdzv-endpoint=127.0.0.1:{port}', '--rdzv-id=trading-nb-test', str(JOB), 'fit', '--out', str(tmp_path), '--epochs', '1']
    nodes = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) for _ in range(2)]
    outs = [n.communicate(timeout=TIMEOUT)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], '\n'.join(o[-3000:] for o in outs)
    r = result(tmp_path)
    assert r['world'] == 2 and r['backend'] == 'gloo'


def test_a_dying_rank_stops_the_job(tmp_path):
    "Rank 1 raises while rank 0 waits in a barrier: torchrun stops both, exits non-zero, and the exception is shown"
    p = torchrun(JOB, 'fail', '--out', tmp_path, timeout=300)
    assert p.returncode != 0
    assert 'boom from rank 1' in p.stdout + p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='NCCL works where CUDA is')
def test_nccl_on_a_cpu_machine_says_what_to_run(tmp_path, series_csv):
    p = torchrun(*train_args(series_csv, tmp_path / 'x', '--dist-backend', 'nccl'))
    assert p.returncode != 0
    err = p.stdout + p.stderr
    assert 'NCCL needs CUDA GPUs, and this machine has none' in err and '--dist-backend gloo' in err
    assert 'trading-nb train (rank 0): error:' in err


def test_single_process_makes_no_process_group(series_csv):
    "Without torchrun, fit never touches torch.distributed"
    from trading_nb.dataset import chronological_split
    from trading_nb.model import ModelConfig, TradingModel
    from trading_nb.train import fit
    tr, va, _ = chronological_split(make_synthetic(600, seed=1), lookback=20)
    m = TradingModel(ModelConfig(input_channels=tr.n_channels, n_indicators=tr.n_indicators, lookback=20, conv_channels=8, hidden_size=16,
                                 n_heads=2, indicator_hidden=8, head_hidden=8))
    res = fit(m, tr, va, epochs=1, device='cpu', progress=False)
    assert not torch.distributed.is_initialized()
    assert (res.world_size, res.backend) == (1, None)


def test_cli_train_from_a_store_with_two_ranks(tmp_path):
    "Every rank memory-maps the same feature store; the block sampler shards it; rank 0 writes one run with the windows of one process"
    from trading_nb.store import build_store
    build_store(make_synthetic_panel(n_symbols=4, n=420, seed=2), tmp_path / 'store')
    args = lambda out: train_args(tmp_path / 'store', tmp_path / out, '--epochs', 1, '--steps-per-epoch', 5, '--set', 'evaluation.n_boot=50')
    one = ok(subprocess.run(list(map(str, args('one')[1:])), capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT))
    two = ok(torchrun(*args('two')))
    assert two.stdout.count('report:') == 1 and 'Traceback' not in two.stderr
    m1, m2 = (json.loads((tmp_path / d / 'metrics.json').read_text()) for d in ('one', 'two'))
    assert (m2['training']['world_size'], m2['data']['store']['rows']) == (2, m1['data']['store']['rows'])
    for part in ('train', 'val', 'test'): assert m1['data'][part] == m2['data'][part]
    assert sum(1 for _ in open(tmp_path / 'two' / 'test_predictions.csv')) - 1 == m2['data']['test'][2]   # every test window once
