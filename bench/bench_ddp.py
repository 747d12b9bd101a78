"""Distributed training rows of `make bench`: samples/s of `train_epoch` with 1 and 2 processes on the CPU (torchrun + gloo),
and over every visible GPU (torchrun + NCCL) when CUDA is present.

Also runnable alone, as the job torchrun launches:
    python -m torch.distributed.run --standalone --nproc_per_node=2 bench/bench_ddp.py --device cpu --steps 20 --out rate.json
"""
import argparse, itertools, json, os, subprocess, sys, tempfile, time
from contextlib import nullcontext
from pathlib import Path

HERE = Path(__file__).resolve().parent


def job(argv=None):
    "One timed run: `steps` global batches of 64 windows of the S&P 500 at the design document's sizes, after 3 warm-up steps"
    p = argparse.ArgumentParser()
    p.add_argument('--device', default='cpu'); p.add_argument('--steps', type=int, default=20)
    p.add_argument('--batch-size', type=int, default=64); p.add_argument('--amp', action='store_true'); p.add_argument('--out', required=True)
    a = p.parse_args(argv)
    import torch
    from torch import nn
    from trading_nb.data import load_sample
    from trading_nb.dataset import batches, chronological_split
    from trading_nb.distributed import ShardedBatches, barrier, init_distributed, synced_batchnorm, wrap_ddp
    from trading_nb.model import ModelConfig, TradingModel
    from trading_nb.train import amp_dtype_for, set_seed, train_epoch
    info, dev = init_distributed(a.device)
    train, _, _ = chronological_split(load_sample('sp500'), lookback=100)
    set_seed(0)
    model = TradingModel(ModelConfig(input_channels=train.n_channels, n_indicators=train.n_indicators, output_dim=train.output_dim)).to(dev)
    amp = amp_dtype_for(dev, a.amp)
    opt, crit = torch.optim.AdamW(model.parameters(), lr=1e-4), nn.CrossEntropyLoss()
    def loader(seed):
        return (ShardedBatches(train, a.batch_size, seed, device=dev) if info.enabled else batches(train, a.batch_size, shuffle=True, seed=seed, device=dev))
    with synced_batchnorm(model) if info.enabled else nullcontext():
        net = wrap_ddp(model, dev) if info.enabled else model
        def run(k, seed):
            train_epoch(net, itertools.islice(iter(loader(seed)), k), opt, dev, crit, None, amp, None, 1.0)
            if dev.type == 'cuda': torch.cuda.synchronize(dev)
        run(3, 0)
        barrier(); t0 = time.perf_counter()
        run(a.steps, 1)
        barrier(); secs = time.perf_counter() - t0
    if info.main:
        Path(a.out).write_text(json.dumps(dict(samples_per_s=a.steps * a.batch_size / secs, seconds=secs, world_size=info.world_size,
                                               backend=info.backend, device=str(dev), threads=torch.get_num_threads(),
                                               amp=str(amp).replace('torch.', '') if amp else 'fp32')))


def _launch(nproc: int, device: str, steps: int, threads: int | None = None, amp: bool = False, timeout: float = 900) -> dict:
    "Run `job` under torchrun (or plainly for one process) and read its result"
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / 'rate.json'
        args = [str(HERE / 'bench_ddp.py'), '--device', device, '--steps', str(steps), '--out', str(out)] + ['--amp'] * amp
        cmd = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', *args] if nproc > 1
               else [sys.executable, *args])
        env = dict(os.environ)
        if threads: env['OMP_NUM_THREADS'] = str(threads)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if p.returncode != 0: return dict(error=(p.stderr or p.stdout).strip().splitlines()[-1][:200])
        return json.loads(out.read_text())


def bench_ddp(quick: bool) -> list:
    "CPU: 1 process (1 and 2 threads) vs 2 processes x 1 thread; GPU: 1 GPU vs torchrun over all of them"
    import torch
    from common import Row                   # here, not at the top: the torchrun job (`job`) does not need it
    steps = 8 if quick else 30
    cores = os.cpu_count() or 1
    rows, res = [], {}
    res['1 process, 1 thread'] = _launch(1, 'cpu', steps, threads=1)
    res[f'1 process, {min(cores, 2)} threads'] = _launch(1, 'cpu', steps, threads=min(cores, 2))
    res['torchrun 2 processes x 1 thread (gloo)'] = _launch(2, 'cpu', steps, threads=1)
    base = res['1 process, 1 thread'].get('samples_per_s')
    load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
    for k, r in res.items():
        rows.append(Row('distributed', f'train_epoch samples/s, CPU fp32, global batch 64, {k}', r.get('samples_per_s'), 'samples/s',
                        '1 process, 1 thread', base, f"{steps} steps", r.get('error', f'load {load}')))
    n_gpu = torch.cuda.device_count()
    if not n_gpu:
        rows.append(Row('distributed', 'GPU rows: torchrun over every visible GPU (NCCL)', None, '', 'no CUDA here', None, '-',
                        'skipped: torch.cuda.is_available() is False'))
        return rows
    g = {}
    for amp in (False, True):
        tag = 'AMP' if amp else 'fp32'
        g[f'1 GPU, {tag}'] = _launch(1, 'cuda', steps * 4, amp=amp)
        if n_gpu > 1: g[f'torchrun {n_gpu} GPUs (NCCL), {tag}'] = _launch(n_gpu, 'cuda', steps * 4, amp=amp)
    gbase = g['1 GPU, fp32'].get('samples_per_s')
    for k, r in g.items():
        rows.append(Row('distributed', f'train_epoch samples/s, global batch 64, {k}', r.get('samples_per_s'), 'samples/s', '1 GPU, fp32', gbase,
                        f"{steps * 4} steps", r.get('error', r.get('amp', ''))))
    return rows


if __name__ == '__main__':
    job()
