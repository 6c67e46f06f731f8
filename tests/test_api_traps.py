"""Sharp edges of the public API: weightings by name, partial StepModels, probe fingerprints,
readouts that change their input."""

import inspect
import re
import types

import numpy as np
import pytest
import torch
from torch import nn

import tensorboard_rnn_units as rnn_units

X = torch.rand(4, 6, 3, generator=torch.Generator().manual_seed(0))


def _features(**kwargs):
    torch.manual_seed(0)
    return rnn_units.compute_unit_features(nn.RNN(3, 4), rnn_units.Probe(X, 2), **kwargs)


# --- weightings are indexed by name ------------------------------------------------------------


def test_weightings_are_indexed_by_name_in_the_order_asked():
    both = _features(weighting=("relu", "top"))
    assert both.weightings == ("relu", "top")
    assert both["top"] is both.weighted["top"] and both["relu"] is both.weighted["relu"]
    assert not torch.equal(both["top"].average, both["relu"].average)
    relu = _features(weighting="relu")
    assert relu.weightings == ("relu",)
    with pytest.raises(KeyError, match=r"weighting 'top' was not computed; these were \('relu',\)"):
        relu["top"]
    with pytest.raises(KeyError, match=r"weighting 0 was not computed"):
        relu[0]


def test_no_weighting_is_implicit():
    features = _features()
    with pytest.raises(AttributeError, match=re.escape("no attribute 'average'; index the weighting first, e.g. features['top'].average")):
        features.average
    for name in rnn_units.WeightedFeatures.__dataclass_fields__:
        assert not hasattr(features, name), name
    with pytest.raises(AttributeError, match=r"no attribute 'nonsense'$"):
        features.nonsense
    with pytest.raises(TypeError, match=r"not iterable"):  # not silently __getitem__(0), (1), ...
        "top" in features


def test_compute_defaults_to_the_weightings_add_rnn_units_logs():
    assert _features().weightings == ("top", "relu")
    compute = inspect.signature(rnn_units.compute_unit_features).parameters["weighting"].default
    logged = inspect.signature(rnn_units.add_rnn_units).parameters
    assert compute == (logged.get("weighting") or logged["weightings"]).default == ("top", "relu")


# --- a partial StepModel is told what it lacks -------------------------------------------------


def _tanh_rnn(**leave_out):
    """A complete StepModel (a 4-unit tanh RNN) as a namespace; ``leave_out`` names members to drop
    (value ``True``) or to replace (any other value)."""
    torch.manual_seed(0)
    cell = nn.Linear(3 + 4, 4)

    def step(x, state, signal):
        pre = cell(torch.cat([x, state[0]], 1))
        return (torch.tanh(pre),), pre if signal == "preactivation" else torch.tanh(pre)

    members = dict(
        input_size=3,
        hidden_size=4,
        signals=("preactivation", "hidden"),
        initial_state=lambda batch_size: (torch.zeros(batch_size, 4),),
        step=step,
        readout_input=lambda state: state[0],
    )
    for name, value in leave_out.items():
        members.pop(name)
        if value is not True:
            members[name] = value
    return types.SimpleNamespace(**members)


def test_a_complete_step_model_runs():
    features = rnn_units.compute_unit_features(
        _tanh_rnn(), rnn_units.Probe(X, 2), readout=nn.Linear(4, 3), rollout=2
    )
    assert features.units == 4 and features.signal == "preactivation"


@pytest.mark.parametrize(
    "leave_out,missing",
    [
        (dict(readout_input=True), "readout_input"),
        (dict(signals=True), "signals"),
        (dict(step=True, initial_state=True), "initial_state, step"),
        (dict(step=None), "step"),  # present but not callable
        (dict(input_size=True, hidden_size=True, readout_input="h"), "input_size, hidden_size, readout_input"),
    ],
)
def test_a_partial_step_model_gets_the_missing_members_named(leave_out, missing):
    with pytest.raises(
        TypeError,
        match=rf"rnn: SimpleNamespace implements only part of tensorboard_rnn_units.StepModel; missing {missing}$",
    ):
        rnn_units.compute_unit_features(_tanh_rnn(**leave_out), rnn_units.Probe(X, 2))


def test_a_supported_subclass_that_implements_step_model_runs_its_own_steps():
    class GRUWithOwnSteps(nn.GRU):
        signals = ("constant",)

        def initial_state(self, batch_size):
            return (torch.zeros(batch_size, self.hidden_size),)

        def step(self, x, state, signal):
            return state, torch.ones(x.shape[0], self.hidden_size)

        def readout_input(self, state):
            return state[0]

    features = rnn_units.compute_unit_features(GRUWithOwnSteps(3, 4), rnn_units.Probe(X, 2))
    assert features.signal == "constant"
    assert torch.equal(features.signal_mean, torch.ones(4, dtype=torch.float64))


# --- Probe.fingerprint -------------------------------------------------------------------------


def test_fingerprint_is_a_fixed_function_of_the_probe_data():
    # Hard-coded: the same in every process, version and platform (see Probe.fingerprint).
    small = rnn_units.Probe(torch.arange(2 * 5 * 3).reshape(2, 5, 3).float(), window=2)
    assert small.fingerprint == "e3ba9b50c796d7b8"
    labelled = rnn_units.Probe(torch.arange(2 * 5 * 3).reshape(2, 5, 3).float(), window=2, labels=[0, 1])
    assert labelled.fingerprint == "d19cf45f0296d5c9"


def test_fingerprint_follows_the_data_not_its_container():
    base = rnn_units.Probe(X, 2, labels=[0, 1, 0, 1], max_windows=7, seed=3)
    assert re.fullmatch(r"[0-9a-f]{16}", base.fingerprint)
    same = [
        rnn_units.Probe(X.numpy(), np.int64(2), labels=np.array([0, 1, 0, 1]), max_windows=7, seed=3),
        rnn_units.Probe(X.double(), 2, labels=torch.tensor([0, 1, 0, 1], dtype=torch.int32), max_windows=7, seed=3),
        rnn_units.Probe(X.clone(), 2, labels=[0, 1, 0, 1], max_windows=7, seed=3, class_names=["a", "b"]),
    ]
    assert all(p.fingerprint == base.fingerprint for p in same)
    changed = X.clone()
    changed[3, 5, 2] += 1e-3
    different = [
        rnn_units.Probe(X, 3, labels=[0, 1, 0, 1], max_windows=7, seed=3),  # L
        rnn_units.Probe(X, 2, labels=[0, 1, 0, 1], max_windows=8, seed=3),  # sample size
        rnn_units.Probe(X, 2, labels=[0, 1, 0, 1], max_windows=7, seed=4),  # sample
        rnn_units.Probe(X, 2, labels=[0, 1, 0, 1]),  # all windows
        rnn_units.Probe(X, 2, labels=[0, 1, 1, 1], max_windows=7, seed=3),  # one label
        rnn_units.Probe(X, 2, max_windows=7, seed=3),  # no labels
        rnn_units.Probe(changed, 2, labels=[0, 1, 0, 1], max_windows=7, seed=3),  # one value
        rnn_units.Probe(X.reshape(2, 12, 3), 2, labels=[0, 1], max_windows=7, seed=3),  # shape
        rnn_units.Probe(X, 2, labels=[0, 1, 0, 1], max_windows=7, seed=3, sample_size=3),  # activation sample
    ]
    fingerprints = [base.fingerprint] + [p.fingerprint for p in different]
    assert len(set(fingerprints)) == len(fingerprints)


def test_features_carry_the_probe_fingerprint():
    probe = rnn_units.Probe(X, 2, labels=[0, 1, 0, 1])
    features = rnn_units.compute_unit_features(nn.GRU(3, 4), probe)
    assert features.probe_fingerprint == probe.fingerprint


# --- a readout that changes its input in place ---------------------------------------------------


@pytest.mark.parametrize("kind, signal, context", [("gru", "hidden", "prefix"), ("gru", "hidden", "window"),
                                                   ("rnn", "hidden", "prefix"), ("lstm", "hidden", "window"),
                                                   ("rnn", "preactivation", "prefix")])
def test_a_readout_that_changes_its_input_in_place_changes_neither_rollouts_nor_signals(kind, signal, context):
    """``nn.ReLU(inplace=True)`` first in a readout changes the tensor it is given. In the module
    it reads the RNN's outputs; here that tensor is the state the rollout feeds back, and a
    window's hidden signal may share its memory: every feature equals the out-of-place readout's."""
    torch.manual_seed(5)
    rnn = {"gru": nn.GRU, "rnn": nn.RNN, "lstm": nn.LSTM}[kind](3, 8, batch_first=True)
    linear = nn.Linear(8, 3)
    probe = rnn_units.Probe(torch.randn(60, 9, 3, generator=torch.Generator().manual_seed(1)), window=3)
    run = lambda readout: rnn_units.compute_unit_features(
        rnn, probe, readout=readout, rollout=3, signal=signal, context=context, weighting=("top", "relu"))
    in_place, out_of_place = run(nn.Sequential(nn.ReLU(inplace=True), linear)), run(nn.Sequential(nn.ReLU(), linear))
    for name in ("top", "relu"):
        for field in ("average", "rollout", "exemplar_signal", "active_fraction"):
            assert torch.equal(getattr(in_place[name], field), getattr(out_of_place[name], field)), (name, field)
    assert torch.equal(in_place.signal_mean, out_of_place.signal_mean)
    assert torch.equal(in_place.activation_sample, out_of_place.activation_sample)
