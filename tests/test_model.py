"Model: config and input matrices, checkpoint round trip, causal padding, last-query attention, gradient checkpointing"
from dataclasses import asdict

import pytest
import torch
from torch import nn

from trading_nb.model import ModelConfig, TradingModel

SMALL = dict(conv_channels=8, hidden_size=16, n_heads=2, indicator_hidden=8, head_hidden=8)


def small(**kw) -> ModelConfig:
    return ModelConfig(**{'input_channels': 6, 'n_indicators': 3, 'lookback': 24, **SMALL, **kw})


def inputs(c: ModelConfig, batch=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, c.lookback, c.input_channels, generator=g), torch.randn(batch, c.n_indicators, generator=g)


@pytest.mark.parametrize('kw, msg', [
    (dict(input_channels=0), 'input_channels must be a positive int'),
    (dict(n_indicators=-1), 'n_indicators must be a positive int'),
    (dict(lookback=True), 'lookback must be a positive int'),
    (dict(output_dim=2.0), 'output_dim must be a positive int'),
    (dict(num_layers=0), 'num_layers must be a positive int'),
    (dict(kernel_size=0), 'kernel_size must be a positive int'),
    (dict(hidden_size=16, n_heads=3), 'must be divisible by n_heads'),
    (dict(dropout=-0.1), 'dropout must be in [0, 1)'),
    (dict(dropout=1), 'dropout must be in [0, 1)'),
    (dict(dropout='0.2'), 'dropout must be in [0, 1)'),
    (dict(gate=1), 'gate must be True or False'),
])
def test_bad_config(kw, msg):
    with pytest.raises(ValueError, match=msg.replace('[', r'\[').replace(')', r'\)')):
        small(**kw)


def test_config_rejects_unknown_keys():
    d = asdict(small()) | {'hidden': 32}
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        ModelConfig(**d)


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    c = small(output_dim=3)
    m = TradingModel(c).eval()
    path = tmp_path / 'model.pt'
    torch.save({'config': asdict(c), 'state_dict': m.state_dict()}, path)
    ck = torch.load(path, weights_only=True)
    assert all(isinstance(v, (int, float, bool, str)) for v in ck["config"].values())
    back = TradingModel(ModelConfig(**ck['config'])).eval()
    back.load_state_dict(ck['state_dict'])
    x, ind = inputs(c)
    with torch.no_grad(): assert torch.equal(back(x, ind), m(x, ind))


@pytest.mark.parametrize('make, msg', [
    (lambda x, i: (x.transpose(1, 2), i), r'sequence must be \(batch, lookback=24, input_channels=6\), got \(5, 6, 24\)'),
    (lambda x, i: (x[:, 1:], i), r'got \(5, 23, 6\)'),
    (lambda x, i: (x[..., :5], i), r'got \(5, 24, 5\)'),
    (lambda x, i: (x[0], i), 'sequence must have 3 dimensions'),
    (lambda x, i: (x, i[0]), 'indicators must have 2 dimensions'),
    (lambda x, i: (x, i[:, :2]), r'indicators must be \(batch, n_indicators=3\)'),
    (lambda x, i: (x, i[:4]), r'different batch sizes \(5 and 4\)'),
    (lambda x, i: (x.long(), i), 'sequence must be a float tensor'),
    (lambda x, i: (x, i.int()), 'indicators must be a float tensor'),
    (lambda x, i: (x[:0], i[:0]), 'empty batch'),
])
def test_bad_inputs(make, msg):
    c = small()
    m = TradingModel(c)
    with pytest.raises(ValueError, match=msg):
        m(*make(*inputs(c)))


def test_non_tensor_input():
    c = small(); x, ind = inputs(c)
    with pytest.raises(TypeError, match='sequence must be a torch.Tensor, got list'):
        TradingModel(c)(x.tolist(), ind)


@pytest.mark.parametrize('lookback', [1, 2, 3, 24])
@pytest.mark.parametrize('kernel_size', [1, 3, 5])
def test_shapes_any_lookback_and_kernel(lookback, kernel_size):
    c = small(lookback=lookback, kernel_size=kernel_size, output_dim=3)
    m = TradingModel(c)
    x, ind = inputs(c, batch=2)
    assert m(x, ind).shape == (2, 3)
    assert m.encode(x, last_query_only=False).shape == (2, lookback, 16)


def test_conv_is_causal_and_keeps_length():
    "Changing a window's last bar changes the conv output at the last step only"
    torch.manual_seed(1)
    c = small(kernel_size=5)
    m = TradingModel(c).eval()
    x, _ = inputs(c)
    y = x.clone(); y[:, -1] += 10
    with torch.no_grad():
        a, b = m.conv(x.transpose(1, 2)), m.conv(y.transpose(1, 2))
    assert a.shape[-1] == c.lookback
    assert torch.equal(a[..., :-1], b[..., :-1])
    assert not torch.equal(a[..., -1], b[..., -1])


@pytest.mark.parametrize('lookback', [1, 7, 50])
def test_last_query_attention_matches_full(lookback):
    torch.manual_seed(2)
    c = small(lookback=lookback)
    m = TradingModel(c).eval()
    x, _ = inputs(c)
    with torch.no_grad():
        torch.testing.assert_close(m.encode(x)[:, 0], m.encode(x, last_query_only=False)[:, -1], atol=1e-6, rtol=0)


@pytest.mark.parametrize('kw', [dict(), dict(num_layers=1), dict(num_layers=3, gate=False), dict(dropout=0.0)])
@pytest.mark.parametrize('train', [True, False])
def test_gradient_checkpointing_same_gradients(kw, train):
    torch.manual_seed(3)
    c = small(**kw)
    ref = TradingModel(c)
    ck = TradingModel(c); ck.load_state_dict(ref.state_dict()); ck.gradient_checkpointing_enable()
    x, ind = inputs(c, batch=6)
    y = torch.randint(0, 2, (6,))
    grads = []
    for m in (ref, ck):
        m.train(train); m.zero_grad()
        torch.manual_seed(4)
        nn.functional.cross_entropy(m(x, ind), y).backward()
        grads.append({n: p.grad for n, p in m.named_parameters()})
    for n in grads[0]: torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)
    for a, b in zip(ref.buffers(), ck.buffers()): assert torch.equal(a, b)   # BatchNorm statistics updated once


def test_gradient_checkpointing_leaves_inference_alone():
    torch.manual_seed(5)
    c = small()
    m = TradingModel(c).eval()
    x, ind = inputs(c)
    with torch.no_grad():
        a = m(x, ind)
        b = m.gradient_checkpointing_enable()(x, ind)
    assert torch.equal(a, b)
    assert m.gradient_checkpointing_disable().gradient_checkpointing is False


def test_sample_independent_of_batch_mates_in_eval():
    torch.manual_seed(6)
    c = small()
    m = TradingModel(c).eval()
    x, ind = inputs(c, batch=9)
    with torch.no_grad():
        batch = m(x, ind)
        alone = torch.cat([m(x[i:i + 1], ind[i:i + 1]) for i in range(9)])
        shuffled = m(x.flip(0), ind.flip(0)).flip(0)
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=0)
    torch.testing.assert_close(shuffled, batch, atol=1e-5, rtol=0)


def test_same_seed_same_model_and_outputs():
    c = small()
    out = []
    for _ in range(2):
        torch.manual_seed(7)
        m = TradingModel(c)
        x, ind = inputs(c)
        torch.manual_seed(8)
        out.append(m.train()(x, ind))
    assert torch.equal(*out)


def test_gate_weights_sum_to_one_and_off_switch():
    torch.manual_seed(9)
    c = small()
    m = TradingModel(c)
    nn.init.normal_(m.gate.weight)
    w = m.eval().gate_values(*inputs(c))
    assert w.shape == (5, 2) and not w.requires_grad
    torch.testing.assert_close(w.sum(1), torch.ones(5))
    assert not torch.allclose(w, torch.full_like(w, 0.5))
    assert TradingModel(small(gate=False)).gate is None
    with pytest.raises(ValueError, match='no gate'):
        TradingModel(small(gate=False)).gate_values(*inputs(c))


def test_batch_of_one_trains():
    c = small()
    m = TradingModel(c).train()
    x, ind = inputs(c, batch=1)
    m(x, ind).sum().backward()
    assert all(p.grad is not None for p in m.parameters())


@pytest.mark.parametrize('kw, msg', [
    (dict(kind='LSTM'), "ModelConfig.kind must be one of 'hybrid', 'lstm', 'gru', 'alstm', 'transformer', 'tcn', 'lightgbm', 'linear'; got 'LSTM'"),
    (dict(kind=None), "ModelConfig.kind must be one of"),
    (dict(kind='alstm', rnn='GRU'), "rnn must be 'gru' or 'lstm'"),
    (dict(num_leaves=1), 'num_leaves must be at least 2'),
    (dict(num_leaves=2.5), 'num_leaves must be a positive int'),
    (dict(kind='transformer', hidden_size=16, n_heads=3), 'must be divisible by n_heads'),
])
def test_bad_zoo_config(kw, msg):
    with pytest.raises(ValueError, match=msg.replace('[', r'\[').replace(')', r'\)').replace('(', r'\(')):
        small(**kw)


@pytest.mark.parametrize('kind', ['lstm', 'gru', 'alstm', 'transformer', 'tcn'])
def test_zoo_input_matrix(kind):
    "Every network refuses what the hybrid refuses, with the same messages"
    from trading_nb.model import build_model
    c = small(kind=kind)
    m = build_model(c)
    x, ind = inputs(c)
    for bad, msg in ((lambda: m(x.tolist(), ind), 'sequence must be a torch.Tensor'), (lambda: m(x.long(), ind), 'sequence must be a float tensor'),
                     (lambda: m(x[:, :-1], ind), 'sequence must be (batch, lookback=24'), (lambda: m(x, ind[:, :-1]), 'indicators must be (batch, n_indicators=3)'),
                     (lambda: m(x[:2], ind), 'different batch sizes'), (lambda: m(x[:0], ind[:0]), 'empty batch')):
        with pytest.raises((ValueError, TypeError), match=msg.replace('(', r'\(').replace(')', r'\)')): bad()


@pytest.mark.parametrize('kind', ['hybrid', 'lstm', 'gru', 'alstm', 'transformer', 'tcn'])
def test_zoo_bf16_autocast(kind):
    "Every network runs forward and backward under CPU bf16 autocast, close to fp32"
    from trading_nb.model import build_model
    torch.manual_seed(0)
    c = small(kind=kind, dropout=0.0)
    m = build_model(c).eval()
    x, ind = inputs(c)
    with torch.no_grad():
        full = m(x, ind)
        with torch.autocast('cpu', dtype=torch.bfloat16): low = m(x, ind).float()
    assert (low - full).abs().max() < 0.1
    m.train()
    with torch.autocast('cpu', dtype=torch.bfloat16): loss = nn.functional.cross_entropy(m(x, ind).float(), torch.zeros(len(x), dtype=torch.long))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
