"""Logging leaves the model as it was; names TensorBoard cannot serve are warned about."""

import re
import types
import warnings

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import features as features_module

D, H, L, R = 3, 5, 3, 2


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(D, H, batch_first=True)
        self.head = nn.Sequential(nn.Linear(H, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, D))


def _trained_model():
    """A model in train mode with gradients and BatchNorm statistics that a batch has moved."""
    model = _Model().train()
    out, _ = model.rnn(torch.rand(4, 6, D))
    model.head(out[:, -1]).sum().backward()
    return model


def _probe():
    return rnn_units.Probe(torch.rand(4, 7, D, generator=torch.Generator().manual_seed(1)), L)


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},  # parameters and BatchNorm statistics
        {k: p.grad.clone() for k, p in model.named_parameters()},
        {k: m.training for k, m in model.named_modules()},
        torch.get_rng_state(),
    )


def _assert_same(before, after):
    for a, b in zip(before[:2], after[:2]):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    assert before[2] == after[2]
    assert torch.equal(before[3], after[3])


def test_a_lambda_readout_with_model_leaves_the_model_as_it_was(tmp_path):
    model = _trained_model()
    # Reached through an object that is not a module: the lambda's closure names only `parts`.
    parts = types.SimpleNamespace(head=model.head)
    readout = lambda h: parts.head(h)
    probe = _probe()
    assert model.head[1].num_batches_tracked == 1 and model.head.training
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # model= given: no warning
        a = rnn_units.compute_unit_features(model.rnn, probe, readout=readout, rollout=R, model=model)
        with SummaryWriter(tmp_path) as writer:
            b = rnn_units.add_rnn_units(writer, "rnn/units", model.rnn, probe, global_step=0,
                                        readout=readout, rollout=R, model=model)
    _assert_same(before, _snapshot(model))
    model.head.eval()  # by hand: what the rollouts must match
    expected = rnn_units.compute_unit_features(model.rnn, probe, readout=model.head, rollout=R)
    for got in (a, b):
        torch.testing.assert_close(got.mean_rollout, expected.mean_rollout, rtol=0, atol=0)
        for w in ("top", "relu"):
            torch.testing.assert_close(got[w].rollout, expected[w].rollout, rtol=0, atol=0)


def test_model_must_be_a_module():
    model = _trained_model()
    with pytest.raises(TypeError, match=r"^model: expected the nn.Module that holds the readout's modules, got dict$"):
        rnn_units.compute_unit_features(model.rnn, _probe(), readout=model.head, rollout=R, model={})


def test_a_function_readout_without_model_warns_once_at_the_users_call(monkeypatch, tmp_path):
    monkeypatch.setattr(features_module, "_warned_function_readout", False)
    model = _trained_model()
    probe = _probe()
    readout = lambda h: model.head(h)
    with pytest.warns(UserWarning, match=r"^readout: a function may run modules .* pass model= .* dropout and BatchNorm") as caught:
        rnn_units.compute_unit_features(model.rnn, probe, readout=readout, rollout=R)
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn_units.compute_unit_features(model.rnn, probe, readout=readout, rollout=R)  # once per process
    monkeypatch.setattr(features_module, "_warned_function_readout", False)
    with pytest.warns(UserWarning, match=r"pass model=") as caught, SummaryWriter(tmp_path) as writer:
        rnn_units.add_rnn_units(writer, "t", model.rnn, probe, global_step=0, readout=readout, rollout=R)
    assert caught[0].filename == __file__  # through add_rnn_units too


@pytest.mark.parametrize("form", ["module", "method", "model given", "no rollout"])
def test_readouts_the_package_can_see_do_not_warn(monkeypatch, form):
    monkeypatch.setattr(features_module, "_warned_function_readout", False)
    model = _trained_model()
    kwargs = {
        "module": dict(readout=model.head, rollout=R),
        "method": dict(readout=model.head.forward, rollout=R),
        "model given": dict(readout=lambda h: model.head(h), rollout=R, model=model),
        "no rollout": dict(readout=lambda h: model.head(h), rollout=0),
    }[form]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn_units.compute_unit_features(model.rnn, _probe(), **kwargs)


# --- names TensorBoard's default loader cannot serve --------------------------------------------


@pytest.fixture(scope="module")
def features():
    return rnn_units.compute_unit_features(nn.RNN(D, 4), _probe())


@pytest.mark.parametrize("char", ['"', "\\", "\n", "\t", "\0"])
def test_a_tag_tensorboard_cannot_serve_warns_once(tmp_path, features, char):
    tag = f"rnn{char}units"
    with SummaryWriter(tmp_path / "run") as writer:
        with pytest.warns(UserWarning) as caught:
            rnn_units.add_unit_features(writer, tag, features, global_step=0)
        [warning] = caught
        assert str(warning.message).startswith(f"tag {tag!r} holds {char!r}, which TensorBoard's")
        assert "failed to parse blob key: BadJson(...)" in str(warning.message)
        assert "replace it, e.g. with '_'" in str(warning.message)
        assert warning.filename == __file__
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rnn_units.add_unit_features(writer, tag, features, global_step=1)  # once per name


@pytest.mark.parametrize("char", ['"', "\\"])
def test_a_run_name_tensorboard_cannot_serve_warns(tmp_path, features, char):
    run = f"seed{char}1-{tmp_path.name}"  # unique per test: the warning is once per name per process
    probe = _probe()
    with SummaryWriter(tmp_path / run) as writer:
        with pytest.warns(UserWarning, match="^" + re.escape(f"run name {run!r} holds ")) as caught:
            rnn_units.add_rnn_units(writer, "rnn/units", nn.RNN(D, 4), probe, global_step=0)
        assert len(caught) == 1 and caught[0].filename == __file__
        assert "failed to parse blob key: BadJson(...)" in str(caught[0].message)


def test_clean_names_do_not_warn(tmp_path, features):
    with SummaryWriter(tmp_path / "seed-1 (lr=0.1)") as writer, warnings.catch_warnings():
        warnings.simplefilter("error")
        rnn_units.add_unit_features(writer, "rnn/units: layer 0 'top'", features, global_step=0)
        rnn_units.add_rnn_units(writer, "rnn/ünits", nn.RNN(D, 4), _probe(), global_step=0)
