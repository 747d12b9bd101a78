"The feature store end to end: a Ray build on a local two-node cluster is the local build byte for byte; a killed build resumes to the same bytes; a store trains like the panel in memory"
import filecmp, os, subprocess, sys, textwrap, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from trading_nb.data import make_synthetic_panel
from trading_nb.dataset import batches, chronological_split
from trading_nb.data import load_panel
from trading_nb.store import Store, build_store, store_split

FILES = ('features.bin', 'dates.bin', 'open.bin', 'high.bin', 'low.bin', 'close.bin', 'volume.bin', 'calendar.bin',
         'index.json', 'dropped.json', 'meta.json')


def same_store(a: Path, b: Path):
    for f in FILES: assert filecmp.cmp(a / f, b / f, shallow=False), f"{f} differs between {a} and {b}"


@pytest.fixture(scope='module')
def bars(tmp_path_factory) -> Path:
    "A synthetic panel as one CSV per symbol"
    d = tmp_path_factory.mktemp('bars')
    for s, g in make_synthetic_panel(6, 500, seed=4).groupby(level='symbol'): g.droplevel('symbol').to_csv(d / f'{s}.csv')
    return d


@pytest.fixture(scope='module')
def local(bars, tmp_path_factory) -> Store:
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return build_store(bars, tmp_path_factory.mktemp('local') / 'store')


def test_ray_two_nodes_byte_identical(bars, local, tmp_path):
    ray = pytest.importorskip('ray', reason="Ray is a dev requirement: pip install 'trading_nb[ray]'")
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1))
    cluster.add_node(num_cpus=1)
    try:
        assert len(cluster.list_all_nodes()) == 2
        st = build_store(bars, tmp_path / 'ray', engine='ray', address=cluster.address, n_tasks=3)
    finally:
        if ray.is_initialized(): ray.shutdown()
        cluster.shutdown()
    same_store(local.path, st.path)


def test_missing_ray_says_how_to_install(bars, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)   # `import ray` now fails as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'trading_nb\[ray\]'"):
        build_store(bars, tmp_path / 'x', engine='ray')


def test_killed_build_resumes_to_the_same_bytes(bars, local, tmp_path):
    "A build process killed (no clean-up, no exception handling) after 3 of 6 units; the next run resumes"
    out = tmp_path / 'store'
    job = textwrap.dedent(f"""
        import os, warnings
        warnings.simplefilter('ignore')
        from trading_nb.store import build_store
        def die(done, total):
            if done == 3: os._exit(9)   # as abrupt as a kill: no finally blocks, no atexit
        build_store({str(bars)!r}, {str(out)!r}, on_unit=die)
    """)
    r = subprocess.run([sys.executable, '-c', job], capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 9, r.stderr
    assert not out.exists()                                      # nothing that looks like a store
    stage = tmp_path / '.store.building'
    assert len([p for p in (stage / 'parts').iterdir() if (p / 'part.json').exists()]) == 3
    with pytest.raises(Exception, match='not a complete feature store'): Store(out)
    done = []
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        build_store(bars, out, on_unit=lambda k, n: done.append(k))
    same_store(local.path, out)
    assert not stage.exists()


def test_store_trains_like_memory(bars, tmp_path):
    "Same sampler, same seed: the weights trained on the store equal those trained on the panel in memory, bit for bit"
    from trading_nb.model import ModelConfig, TradingModel
    from trading_nb.train import set_seed, setup_training, train_epoch
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        st = build_store(bars, tmp_path / 's64', dtype='float64')
        mem, _, _ = chronological_split(load_panel(bars), lookback=20, target='excess')
        disk, _, _ = store_split(st, lookback=20, target='excess')
    torch.set_num_threads(1)
    weights = []
    for ds in (mem, disk):
        set_seed(0)
        model = TradingModel(ModelConfig(input_channels=ds.n_channels, n_indicators=ds.n_indicators, output_dim=ds.output_dim, lookback=20))
        s = setup_training(model, 'cpu', amp=False)
        loader = batches(ds, 64, shuffle=True, seed=1, sampler='blocks', block_size=64, mix=4)
        for _ in range(2): train_epoch(model, loader, s.optimizer, s.device, s.criterion)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for k in weights[0]: assert torch.equal(weights[0][k], weights[1][k]), k


def test_fit_from_store_equals_fit_in_memory(bars, tmp_path):
    "End to end through `fit`: a float64 store with the default sampler ('auto': blocks for a store) trains the weights that the panel in memory trains with sampler='blocks', bit for bit; the store's targets are never materialised"
    from trading_nb.model import ModelConfig, TradingModel
    from trading_nb.store import StoreDataset
    from trading_nb.train import fit, set_seed
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        st = build_store(bars, tmp_path / 's64', dtype='float64')
        mem = chronological_split(load_panel(bars), lookback=20, target='excess')
        disk = store_split(st, lookback=20, target='excess')

    class NoTargets(StoreDataset):
        @property
        def targets(self): raise MemoryError("materialised every target")
    for d in disk: d.__class__ = NoTargets
    torch.set_num_threads(1)
    out = []
    for (tr, va, _), sampler in ((mem, 'blocks'), (disk, 'auto')):
        set_seed(0)
        model = TradingModel(ModelConfig(input_channels=tr.n_channels, n_indicators=tr.n_indicators, output_dim=tr.output_dim, lookback=20,
                                         conv_channels=8, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=8))
        r = fit(model, tr, va, epochs=3, patience=None, device='cpu', seed=2, progress=False, sampler=sampler, block_size=64, mix=4,
                steps_per_epoch=6, checkpoint_dir=tmp_path / f'ck-{sampler}')
        out.append((model.state_dict(), r.history))
    for k in out[0][0]: assert torch.equal(out[0][0][k], out[1][0][k]), k
    assert out[0][1].drop(columns=['seconds', 'samples_per_s']).equals(out[1][1].drop(columns=['seconds', 'samples_per_s']))
    assert list(out[1][1].step) == [6, 12, 18]


PREDICT_JOB = '''
import sys, warnings
import torch
torch.set_num_threads(1)
from trading_nb.distributed import init_distributed, dist_info
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.store import store_split
from trading_nb.train import predict_dataset, set_seed
store, out = sys.argv[1], sys.argv[2]
info, dev = init_distributed('cpu')
with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    _, _, te = store_split(store, lookback=20)
type(te).targets = property(lambda self: (_ for _ in ()).throw(MemoryError('materialised every target')))
set_seed(0)
model = TradingModel(ModelConfig(input_channels=te.n_channels, n_indicators=te.n_indicators, output_dim=te.output_dim, lookback=20,
                                 conv_channels=8, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=8)).eval()
p, y = predict_dataset(model, te, dev, batch_size=50)
if dist_info().main: torch.save(dict(p=torch.from_numpy(p), y=torch.from_numpy(y), world=dist_info().world_size), out)
'''


def test_predict_dataset_on_a_store_under_torchrun(local, tmp_path):
    "Two gloo ranks each predict a slice of a store's test part (read through `__getitems__`) and gather all of it: one process's predictions"
    job = tmp_path / 'job.py'
    job.write_text(PREDICT_JOB)
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    one = subprocess.run([sys.executable, job, local.path, tmp_path / 'one.pt'], capture_output=True, text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr[-4000:]
    two = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', job, local.path, tmp_path / 'two.pt'],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-6000:]
    a, b = torch.load(tmp_path / 'one.pt', weights_only=True), torch.load(tmp_path / 'two.pt', weights_only=True)
    assert (a['world'], b['world']) == (1, 2)
    assert torch.equal(a['y'], b['y']) and len(a['y']) > 50
    assert torch.allclose(a['p'], b['p'], atol=1e-6)
