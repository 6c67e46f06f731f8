"""Every bad input gets a clear error naming the argument."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tensorboard_rnn_units as rnn_units

X = torch.rand(4, 6, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sequences=torch.rand(4, 6), window=2), r"sequences: expected a 3-D"),
        (dict(sequences=torch.rand(2, 4, 6, 3), window=2), r"sequences: expected a 3-D"),
        (dict(sequences=X, window=0), r"window: expected an integer in 1..6 \(T=6\), got 0"),
        (dict(sequences=X, window=7), r"window: expected an integer in 1..6 \(T=6\), got 7"),
        (dict(sequences=X, window=2.0), r"window: expected an integer"),
        (dict(sequences=torch.full((4, 6, 3), float("nan")), window=2), r"sequences: contains NaN or Inf"),
        (dict(sequences=X.clone().index_fill_(1, torch.tensor([2]), float("inf")), window=2), r"NaN or Inf"),
        (dict(sequences=X, window=2, labels=[0, 1, 2]), r"labels: expected shape \(N,\)=\(4,\)"),
        (dict(sequences=X, window=2, labels=[0.5, 1, 2, 0]), r"labels: expected integer classes"),
        (dict(sequences=X, window=2, labels=[0, -1, 2, 0]), r"labels: expected non-negative"),
        (dict(sequences=X, window=2, labels=[0, 1, 2, 0], class_names=["a"]), r"class_names: 1 names"),
        (dict(sequences=X, window=2, max_windows=0), r"max_windows: expected an integer >= 1, got 0"),
        (dict(sequences=X, window=2, max_windows=5, seed=None), r"seed: expected an integer >= 0, got None"),
        (dict(sequences=[[[1.0], [2.0]], [[1.0]]], window=1), r"sequences: expected a tensor or array of numbers"),
        (dict(sequences="abc", window=1), r"sequences: expected a tensor or array of numbers"),
        (dict(sequences=X > 0.5, window=2), r"sequences: expected real numbers, got dtype torch.bool"),
        (dict(sequences=X, window=2, labels=[0, 1, 2, 10**9]), r"labels: class index 1000000000 is over 9999; pass class_names"),
        (dict(sequences=X, window=2, labels=[0, 1, 2, 0], class_names="abc"), r"class_names: expected a list of names, got str"),
        (dict(sequences=X, window=2, labels=[0, 1, 2, 0], class_names=5), r"class_names: expected a list of names, got int"),
        (dict(sequences=X, window=2, display="heatmap"), r"display: expected one of"),
        (dict(sequences=X, window=2, display="tokens"), r"display: 'tokens' needs vocab="),
        (dict(sequences=X, window=2, channel_names=["a", "b"]), r"channel_names: 2 names for D=3"),
        (dict(sequences=X, window=2, embed=torch.nn.Embedding(3, 3)), r"embed: maps integer tokens, so it needs vocab="),
        (dict(sequences=X, window=2, vocab=list("abc")), r"sequences: with vocab, \(N, T, V\) floats must be one-hot"),
        (dict(sequences=torch.tensor([[0, 1, 3]]), window=2, vocab=list("abc")), r"sequences: tokens must be in 0..2"),
        (dict(sequences=torch.tensor([[0, 1, 2]]), window=2, vocab="abc"), r"vocab: expected a non-empty list of strings"),
        (dict(sequences=torch.tensor([[0, 1, 2]]), window=2, vocab=list("abc"), display="image_rows"), r"display: a token probe"),
        (dict(sequences=X, window=2, annotations={"a": torch.zeros(4, 5)}), r"annotations\['a'\]: expected shape \(N, T\)=\(4, 6\)"),
        (dict(sequences=X, window=2, annotations=[1]), r"annotations: expected a dict"),
    ],
)
def test_probe_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnn_units.Probe(**kwargs)


def test_probe_accepts_numpy_integers_and_keeps_float64():
    probe = rnn_units.Probe(X.double().numpy(), np.int64(2), labels=np.array([0, 1, 2, 0]), max_windows=np.int32(3))
    assert probe.window == 2 and probe.num_windows == 3 and probe.sequences.dtype == torch.float64
    assert rnn_units.Probe(X.half(), 2).sequences.dtype == torch.float32


def test_probe_accepts_numpy_and_samples_reproducibly():
    a = rnn_units.Probe(X.numpy(), 2, max_windows=7, seed=3)
    b = rnn_units.Probe(X, 2, max_windows=7, seed=3)
    c = rnn_units.Probe(X, 2, max_windows=7, seed=4)
    assert a.num_windows == 7 and a.positions == 5
    pairs = list(zip(a.window_sequence.tolist(), a.window_position.tolist()))
    assert len(set(pairs)) == 7 and pairs == sorted(pairs)
    assert torch.equal(a.window_sequence, b.window_sequence) and torch.equal(a.window_position, b.window_position)
    assert pairs != list(zip(c.window_sequence.tolist(), c.window_position.tolist()))
    assert rnn_units.Probe(X, 2, max_windows=1000).num_windows == 20


def _compute(rnn=None, probe=None, **kwargs):
    return rnn_units.compute_unit_features(
        rnn if rnn is not None else nn.RNN(3, 4), probe if probe is not None else rnn_units.Probe(X, 2), **kwargs
    )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(probe=rnn_units.Probe(torch.rand(4, 6, 5), 2)), ValueError, r"probe: inputs have D=5, but the rnn's input_size is 3"),
        (dict(probe=X), TypeError, r"probe: expected a tensorboard_rnn_units.Probe"),
        (dict(rollout=-1), ValueError, r"rollout: expected an integer >= 0"),
        (dict(rollout=2), ValueError, r"readout: a callable .* is required when rollout > 0"),
        (dict(rollout=2, readout=lambda h: h), ValueError, r"readout: expected a floating tensor of shape \(B, D\)=\(\d+, 3\), got \(\d+, 4\)"),
        (dict(rollout=2, readout=lambda h: 1.0), ValueError, r"readout: expected .* got float"),
        (dict(rollout=1, readout=lambda h: torch.full((h.shape[0], 3), float("nan"))), ValueError, r"readout: produced NaN"),
        (dict(signal="cell"), ValueError, r"signal: RNN offers \('preactivation', 'hidden'\), got 'cell'"),
        (dict(weighting="softmax"), ValueError, r"weighting: expected one of"),
        (dict(weighting=("top", "top")), ValueError, r"weighting: expected one of"),
        (dict(weighting=None), ValueError, r"weighting: expected one of"),
        (dict(top_fraction=True), ValueError, r"top_fraction: expected a number in \(0, 1\]"),
        (dict(rollout=1, readout=lambda h: torch.zeros(h.shape[0], 3, device="meta")), ValueError, r"readout: returned a tensor on meta, expected the model's device cpu"),
        (dict(rollout=1, readout=nn.Linear(4, 3).double()), ValueError, r"readout: failed on a \(\d+, 4\) torch.float32 tensor on cpu \(the model's top-layer state\): "),
        (dict(top_fraction=0), ValueError, r"top_fraction: expected a number in \(0, 1\]"),
        (dict(context="suffix"), ValueError, r"context: expected one of"),
        (dict(batch_size=0), ValueError, r"batch_size: expected an integer >= 1 or None \(the device's default\)"),
        (dict(layer=1), ValueError, r"layer: expected an integer in -1..0 for a 1-layer RNN, got 1"),
        (dict(rnn=nn.GRU(3, 4), signal="preactivation"), ValueError, r"signal: GRU offers \('hidden',\)"),
        (dict(rnn=nn.LSTM(3, 4, bidirectional=True)), ValueError, r"rnn: bidirectional layers are not supported"),
        (dict(rnn=nn.LSTM(3, 4, proj_size=2)), ValueError, r"rnn: LSTM with proj_size"),
        (dict(rnn=nn.Linear(3, 4)), TypeError, r"rnn: unsupported type Linear; expected one of nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell"),
    ],
)
@pytest.mark.filterwarnings("ignore:readout. a function may run modules:UserWarning")  # its own test is in test_model_state
def test_compute_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        _compute(**kwargs)


def test_diverged_model_is_reported():
    rnn = nn.RNN(3, 4)
    with torch.no_grad():
        rnn.weight_hh_l0.fill_(float("nan"))
    with pytest.raises(ValueError, match=r"rnn: produced NaN or Inf"):
        _compute(rnn=rnn, weighting="top")


def test_writer_must_be_a_summary_writer(tmp_path):
    probe = rnn_units.Probe(X, 2)
    with pytest.raises(TypeError, match=r"writer: expected a torch.utils.tensorboard.*SummaryWriter, got str"):
        rnn_units.add_rnn_units(str(tmp_path), "t", nn.RNN(3, 4), probe, global_step=0)
    features = _compute()
    with pytest.raises(TypeError, match=r"writer: expected a torch.utils.tensorboard.*SummaryWriter, got dict"):
        rnn_units.add_unit_features({}, "t", features, global_step=0)
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match=r"tag: expected a non-empty string"):
            rnn_units.add_unit_features(writer, "", features, global_step=0)
        with pytest.raises(TypeError, match=r"features: expected UnitFeatures from compute_unit_features, got dict"):
            rnn_units.add_unit_features(writer, "t", {"a": 1}, global_step=0)
        with pytest.raises(ValueError, match=r"global_step: expected an integer in 0\.\.9223372036854775807, got 1.5"):
            rnn_units.add_unit_features(writer, "t", features, global_step=1.5)
