"Model zoo end to end: a planted signal learned by every kind, tabular fits from a store, panels streamed per kind, tuning folds of a tabular kind"
import math

import numpy as np
import pandas as pd
import pytest
import torch

from trading_nb.cross_section import daily_ic, score_from_proba
from trading_nb.data import make_synthetic, make_synthetic_panel
from trading_nb.dataset import chronological_split
from trading_nb.inference import areplay, export_model, predict, replay, setup_inference
from trading_nb.model import MODEL_KINDS, TABULAR_KINDS, TORCH_KINDS, ModelConfig, attention_weights, build_model
from trading_nb.store import build_store, store_split
from trading_nb.tabular import dataset_rows, fit_tabular, sample_windows
from trading_nb.train import fit, predict_dataset

SMALL = dict(conv_channels=16, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=16, num_leaves=15, dropout=0.1)


@pytest.fixture(scope='module')
def planted():
    "The synthetic panel (next excess return driven by the last five idiosyncratic returns) split for lookback 20"
    syn = make_synthetic_panel(20, 500, seed=1, signal=0.6)
    return syn, *chronological_split(syn, lookback=20, horizon=1, target='excess')


def rank_ic(model, ds) -> float:
    proba, _ = predict_dataset(model, ds, torch.device('cpu'))
    return float(daily_ic(score_from_proba(proba), ds.future_returns, ds.dates, symbols=ds.symbols)['rank_ic'].mean())


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_planted_signal_is_learned(planted, kind):
    "Every kind finds the planted signal: test rank IC well above zero (the ideal ranking's is about 0.34)"
    syn, tr, va, te = planted
    torch.manual_seed(0)
    m = build_model(ModelConfig(tr.n_channels, tr.n_indicators, lookback=20, kind=kind, num_layers=2 if kind == 'tcn' else 1, **SMALL))
    if kind in TABULAR_KINDS: fit_tabular(m, tr, va, seed=0)
    else: fit(m, tr, va, epochs=4, batch_size=64, lr=3e-3, device='cpu', progress=False, seed=0, patience=None)
    ic = rank_ic(m, te)
    assert ic > 0.15, (kind, ic, syn.attrs['best_rank_ic'])


def test_trained_attention_sums_to_one(planted):
    "After training, attention over the lookback is a distribution per window, and depends on the window"
    _, tr, va, te = planted
    torch.manual_seed(0)
    m = build_model(ModelConfig(tr.n_channels, tr.n_indicators, lookback=20, kind='alstm', num_layers=1, **SMALL))
    fit(m, tr, va, epochs=2, batch_size=64, lr=3e-3, device='cpu', progress=False, seed=0, patience=None)
    b = te.__getitems__(np.arange(64))
    w = attention_weights(m, b['sequence'], b['indicators'])
    assert w.shape == (64, 20) and torch.allclose(w.sum(1), torch.ones(64), atol=1e-5)
    assert (w - w[:1]).abs().max() > 1e-4


def test_tabular_from_a_store_equals_memory(planted, tmp_path):
    "A float64 store gives the in-memory rows, so the same linear model; a sample of max_rows is StoreDataset.sample's draw"
    syn, tr, va, te = planted
    build_store(syn, tmp_path / 'store', dtype='float64')
    s_tr, s_va, s_te = store_split(tmp_path / 'store', lookback=20, horizon=1, target='excess')
    assert len(s_tr) == len(tr)
    lags = (1, 2, 5, 10)
    np.testing.assert_allclose(dataset_rows(s_tr, lags), dataset_rows(tr, lags), atol=1e-6)
    cfg = ModelConfig(tr.n_channels, tr.n_indicators, lookback=20, kind='linear')
    a, b = build_model(cfg), build_model(cfg)
    fit_tabular(a, tr, va); fit_tabular(b, s_tr, s_va)
    np.testing.assert_allclose(predict_dataset(a, te, torch.device('cpu'))[0], predict_dataset(b, s_te, torch.device('cpu'))[0], atol=1e-5)
    assert np.array_equal(sample_windows(len(s_tr), 300, seed=2), s_tr.sample(300, seed=2).index)
    res = fit_tabular(build_model(cfg.__class__(**{**cfg.__dict__, 'kind': 'lightgbm', 'num_leaves': 7})), s_tr, s_va, seed=2, max_rows=300)
    assert res.rows == 300


@pytest.mark.parametrize('kind', MODEL_KINDS)
def test_panel_stream_equals_predict(planted, kind, tmp_path):
    "Every kind on a panel: the stream (one tick per date) answers what batch prediction gives"
    syn, tr, va, _ = planted
    torch.manual_seed(0)
    m = build_model(ModelConfig(tr.n_channels, tr.n_indicators, lookback=20, kind=kind, **SMALL))
    if kind in TABULAR_KINDS: fit_tabular(m, tr, va, rounds=20)
    im = setup_inference(export_model(m.eval(), tmp_path / 'model.pt', tr, data=syn), device='cpu')
    bars = syn[syn.index.get_level_values('date') >= syn.index.get_level_values('date').unique()[-(im.history_bars + 5)]]
    b, r = predict(im, bars), replay(im, bars)
    assert r.index.equals(b.sort_index().index) and len(r) == 6 * 20   # the first window ends at bar history_bars: 6 dates x 20 names
    assert np.abs(r[im.columns].to_numpy() - b.sort_index()[im.columns].to_numpy()).max() <= 1e-6


def test_tuning_folds_of_a_tabular_kind():
    "cv_scores builds any kind: LightGBM scored on walk-forward folds"
    from trading_nb.experiment import apply_overrides, cv_scores
    from trading_nb.pipeline import Experiment
    exp = apply_overrides(Experiment(), ['model.kind=lightgbm', 'model.num_leaves=7', 'features.lookback=20', 'search.folds=2', 'training.threads=1'])
    scores = cv_scores(exp, make_synthetic(900, seed=3), 'auc')
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)
