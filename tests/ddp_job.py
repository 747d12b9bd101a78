"""Jobs that tests/test_distributed.py launches with torchrun (or plainly, as one process).

    python tests/ddp_job.py step --out DIR              # one optimisation step on the first global batch of 64 windows
    python tests/ddp_job.py fit --out DIR --epochs 3    # `fit` (add --stop-after K to die after epoch K, --resume to continue)
    python tests/ddp_job.py bn --out DIR                # DistBatchNorm1d on each rank's half vs BatchNorm1d on the whole batch
    python tests/ddp_job.py fail --out DIR              # rank 1 raises while rank 0 waits in a barrier

Rank 0 writes DIR/result.pt (weights and facts); nothing else is written by other ranks.
"""
import argparse, sys
from pathlib import Path
import torch
from torch import nn

torch.set_num_threads(1)
from trading_nb.data import make_synthetic
from trading_nb.dataset import batches, chronological_split
from trading_nb.distributed import ShardedBatches, all_reduce_sum, barrier, dist_info, init_distributed, synced_batchnorm, wrap_ddp
from trading_nb.model import ModelConfig, TradingModel
from trading_nb.train import class_weights, fit, set_seed, setup_training, train_epoch


def data():
    return chronological_split(make_synthetic(700, seed=3), lookback=20)


def small_model(ds, dropout: float) -> TradingModel:
    set_seed(0)
    return TradingModel(ModelConfig(input_channels=ds.n_channels, n_indicators=ds.n_indicators, output_dim=ds.output_dim, lookback=20,
                                    conv_channels=8, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=8, dropout=dropout))


def save(out: Path, **facts):
    if dist_info().main:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(facts, out / 'result.pt')


def step(a):
    "One AdamW step on the first global batch (64 windows): DDP with its shards, or one process with all of them"
    tr, _, _ = data()
    info, dev = init_distributed('cpu')
    model = small_model(tr, dropout=0.0)
    s = setup_training(model, dev, weights=class_weights(tr.targets, tr.n_classes))
    if info.enabled:
        with synced_batchnorm(model):
            net = wrap_ddp(model, dev)
            first = next(iter(ShardedBatches(tr, 64, seed=1)))
            stats = train_epoch(net, [first], s.optimizer, dev, s.criterion, s.scaler)
    else:
        first = next(iter(batches(tr, 64, shuffle=True, seed=1)))
        stats = train_epoch(model, [first], s.optimizer, dev, s.criterion, s.scaler)
    save(a.out, state=model.state_dict(), loss=stats['loss'], samples=stats['samples'], local=len(first['target']), world=info.world_size)


def run_fit(a):
    tr, va, _ = data()
    model = small_model(tr, dropout=a.dropout)
    def stop(epoch, row):
        if a.stop_after is not None and epoch >= a.stop_after: sys.exit(3)   # an interruption right after a checkpoint
    ck = a.out / 'checkpoints'
    res = fit(model, tr, va, epochs=a.epochs, batch_size=64, device='cpu', patience=None, progress=False, checkpoint_dir=ck,
              resume=ck / 'last.pt' if a.resume else None, on_epoch_end=stop)
    save(a.out, state=model.state_dict(), history=res.history.to_dict('list'), world=res.world_size, backend=res.backend)


def bn(a):
    "Each rank normalises its half of one batch; compare with BatchNorm1d on the whole batch, computed locally"
    info, _ = init_distributed('cpu')
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 4, 7, generator=g) * 3 + 1
    w = torch.randn(10, 4, 7, generator=g)
    ref_bn = nn.BatchNorm1d(4)
    with torch.no_grad(): ref_bn.weight.copy_(torch.rand(4, generator=g) + 0.5); ref_bn.bias.copy_(torch.rand(4, generator=g) * 2 - 1)   # the same on every rank
    mine_bn = nn.BatchNorm1d(4); mine_bn.load_state_dict(ref_bn.state_dict())
    xr = x.clone().requires_grad_()
    yr = ref_bn(xr); (yr * w).sum().backward()
    part = slice(0, 6) if info.rank == 0 else slice(6, 10)   # unequal halves
    xm = x[part].clone().requires_grad_()
    with synced_batchnorm(mine_bn):
        ym = mine_bn(xm)
        (ym * w[part]).sum().backward()
    wgrad = all_reduce_sum(mine_bn.weight.grad.clone())   # each rank holds the gradient of its own share of the loss
    save(a.out, y_err=(ym - yr[part]).abs().max().item(), xgrad_err=(xm.grad - xr.grad[part]).abs().max().item(),
         mean_err=(mine_bn.running_mean - ref_bn.running_mean).abs().max().item(),
         var_err=(mine_bn.running_var - ref_bn.running_var).abs().max().item(),
         wgrad_err=(wgrad - ref_bn.weight.grad).abs().max().item(), world=info.world_size)


def fail(a):
    info, _ = init_distributed('cpu')
    if info.rank == 1: raise RuntimeError("boom from rank 1")
    barrier()   # rank 0 would wait here for ever without torchrun stopping the job


if __name__ == '__main__':
    p = argparse.ArgumentParser()
    p.add_argument('job', choices=['step', 'fit', 'bn', 'fail'])
    p.add_argument('--out', type=Path, required=True)
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--stop-after', type=int, default=None)
    p.add_argument('--resume', action='store_true')
    p.add_argument('--dropout', type=float, default=0.2)
    a = p.parse_args()
    dict(step=step, fit=run_fit, bn=bn, fail=fail)[a.job](a)
