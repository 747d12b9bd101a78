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
