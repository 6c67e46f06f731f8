"""compute_unit_features against the slow reference in ``reference.py``."""

import pytest
import torch
from torch import nn

import tensorboard_rnn_units as rnn_units
from reference import reference_features
import support

N, T, D, H, L, R, C = 7, 9, 3, 5, 4, 3, 3


def _model(kind, **kwargs):
    torch.manual_seed(1)
    cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM, "rnncell": nn.RNNCell,
           "grucell": nn.GRUCell, "lstmcell": nn.LSTMCell}[kind]
    return cls(D, H, **kwargs).double()


def _data(seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, T, D, generator=g), torch.arange(N) % C


def _readout():
    torch.manual_seed(3)
    return nn.Linear(H, D).double()


def _compare(features, ref, weighting):
    got = features.weighted[weighting]
    for name in ("average", "rollout", "effective_sample_size", "active_fraction",
                 "position_share", "class_weight"):
        expected = ref[name]
        if expected is None:
            assert getattr(got, name) is None, name
        else:
            torch.testing.assert_close(getattr(got, name), expected.double(), rtol=1e-7, atol=1e-9, msg=name)
    assert torch.equal(got.dead, ref["dead"])
    for name in ("signal_mean", "signal_max", "mean_window", "mean_rollout"):
        if ref[name] is None:
            assert getattr(features, name) is None
        else:
            torch.testing.assert_close(getattr(features, name), ref[name].double(), rtol=1e-7, atol=1e-9, msg=name)


def _compare_sample(features, ref, probe):
    """The activation sample is each unit's signal on the probe's sample windows, in their order."""
    expected = ref["signals"][probe.sample].T.float()
    assert features.activation_sample.shape == (ref["signals"].shape[1], probe.sample.numel())
    torch.testing.assert_close(features.activation_sample, expected, rtol=1e-5, atol=1e-6)


CASES = [
    ("rnn", {}, "preactivation", -1),
    ("rnn", {"nonlinearity": "relu", "num_layers": 2}, "preactivation", 0),
    ("rnn", {"num_layers": 2, "batch_first": True}, "preactivation", -1),
    ("rnn", {"num_layers": 2}, "hidden", 1),
    ("gru", {"num_layers": 2}, "hidden", 0),
    ("gru", {"batch_first": True, "bias": False}, "hidden", -1),
    ("lstm", {"num_layers": 2}, "hidden", -1),
    ("lstm", {"num_layers": 3}, "cell", 1),
    ("rnncell", {}, "preactivation", -1),
    ("grucell", {}, "hidden", -1),
    ("lstmcell", {}, "cell", -1),
]


@pytest.mark.parametrize("weighting", ["relu", "top"])
@pytest.mark.parametrize("kind,kwargs,signal,layer", CASES)
def test_matches_reference(kind, kwargs, signal, layer, weighting):
    module = _model(kind, **kwargs)
    x, labels = _data()
    probe = rnn_units.Probe(x, L, labels=labels)
    readout = _readout()
    features = rnn_units.compute_unit_features(
        module, probe, readout=readout, rollout=R, layer=layer, signal=signal,
        weighting=weighting, top_fraction=0.2, batch_size=8,
    )
    windows = list(zip(probe.window_sequence.tolist(), probe.window_position.tolist()))
    ref = reference_features(
        module, probe.sequences.double(), windows, L, signal=signal, layer=layer,
        weighting=weighting, top_fraction=0.2, readout=readout, rollout=R,
        labels=labels, num_classes=C,
    )
    _compare(features, ref, weighting)
    _compare_sample(features, ref, probe)


@pytest.mark.parametrize("context", ["prefix", "window"])
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_sampled_windows_and_contexts_match_reference(kind, context):
    module = _model(kind, num_layers=2)
    x, _ = _data(5)
    probe = rnn_units.Probe(x, L, max_windows=11, seed=4, sample_size=4)
    readout = _readout()
    both = rnn_units.compute_unit_features(
        module, probe, readout=readout, rollout=R, weighting=("top", "relu"),
        top_fraction=0.3, context=context, batch_size=5,
    )
    windows = list(zip(probe.window_sequence.tolist(), probe.window_position.tolist()))
    signal = "preactivation" if kind == "rnn" else "hidden"
    for weighting in ("top", "relu"):
        ref = reference_features(
            module, probe.sequences.double(), windows, L, signal=signal, layer=-1,
            weighting=weighting, top_fraction=0.3, readout=readout, rollout=R, context=context,
        )
        _compare(both, ref, weighting)
    _compare_sample(both, ref, probe)
    assert probe.sample.numel() == 4
    assert both.weightings == ("top", "relu") and list(both.weighted) == ["top", "relu"]
    assert both["top"] is both.weighted["top"] and both["relu"] is both.weighted["relu"]


def test_window_context_differs_from_prefix():
    module = _model("gru")
    probe = rnn_units.Probe(_data()[0], L)
    a = rnn_units.compute_unit_features(module, probe, context="prefix", signal="hidden")
    b = rnn_units.compute_unit_features(module, probe, context="window", signal="hidden")
    assert not torch.allclose(a["relu"].average, b["relu"].average)


def test_batch_size_does_not_change_results():
    module = _model("lstm", num_layers=2)
    probe = rnn_units.Probe(_data()[0], L, labels=_data()[1])
    kwargs = dict(readout=_readout(), rollout=R, weighting=("top", "relu"))
    a = rnn_units.compute_unit_features(module, probe, batch_size=1, **kwargs)
    b = rnn_units.compute_unit_features(module, probe, batch_size=10_000, **kwargs)
    for w in ("top", "relu"):
        torch.testing.assert_close(a.weighted[w].average, b.weighted[w].average)
        torch.testing.assert_close(a.weighted[w].rollout, b.weighted[w].rollout)


def test_dead_unit_gets_zeros_not_nan_and_is_flagged():
    module = _model("rnn")
    with torch.no_grad():
        module.bias_ih_l0[:] = 100.0  # every pre-activation positive ...
        module.bias_ih_l0[2] = -100.0  # ... but unit 2's, always negative
    probe = rnn_units.Probe(_data()[0], L)
    f = rnn_units.compute_unit_features(module, probe, readout=_readout(), rollout=R)["relu"]
    assert f.dead.tolist() == [False, False, True, False, False]
    assert torch.all(f.average[2] == 0) and torch.all(f.rollout[2] == 0)
    assert f.effective_sample_size[2] == 0 and f.active_fraction[2] == 0
    assert torch.isfinite(f.average).all() and torch.isfinite(f.rollout).all()


def test_float32_model_matches_float64():
    x, labels = _data()
    m64 = _model("gru", num_layers=2)
    m32 = _model("gru", num_layers=2).float()
    probe = rnn_units.Probe(x, L)
    a = rnn_units.compute_unit_features(m64, probe, weighting="top", top_fraction=0.3)
    b = rnn_units.compute_unit_features(m32, probe, weighting="top", top_fraction=0.3)
    torch.testing.assert_close(a["top"].average, b["top"].average, rtol=1e-4, atol=1e-4)


def test_thresholds_from_streamed_candidates_match_torch_quantile():
    """Each unit's few largest (smallest) signals, kept batch by batch, give torch.quantile exactly."""
    from tensorboard_rnn_units.sums import Largest, Threshold

    values = torch.randn(1001, 6, dtype=torch.float64)
    for fraction in (1.0, 0.5, 0.02, 0.001, 1e-9):
        for sign in (1.0, -1.0):
            k = 1001 - int((1 - fraction) * 1000)
            largest = Largest(k, 6, sign, "cpu", torch.float64, keyed=False)
            for batch in values.split(97):
                largest.add([batch])
            threshold = Threshold.from_largest(largest.values, 1001, fraction, sign)
            q = 1 - fraction if sign > 0 else fraction
            torch.testing.assert_close(threshold.value, torch.quantile(values, q, dim=0))


def test_largest_from_a_sampled_threshold_equals_a_plain_topk():
    """Whole-probe candidates are cut to the values above a threshold found on a
    sample of them first: the same k largest (and their keys), ties and a unit
    whose sample misses the threshold included."""
    from tensorboard_rnn_units.sums import Largest

    n, k = 40_000, 800
    values = torch.randn(n, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    values[:, 1] = values[:, 1].round()  # few distinct values: ties at the k-th
    values[:, 2] = torch.where(torch.arange(n) % 50 == 0, 10.0, -1.0)  # the top 800 are all ties at 10
    values[::16, 3] = -5.0  # units whose sample says little about the rest
    values[1::2, 4] = torch.arange(n // 2, dtype=torch.float64)
    keys = torch.arange(n)
    for sign in (1.0, -1.0):
        for blocks in ([values], list(values.split([12_345, 20_000, 7_655]))):  # one block, or a pass's batches
            largest = Largest(k, 5, sign, "cpu", torch.float64, keyed=True)
            largest.add(blocks, keys)
            expected = (sign * values).T.topk(k, dim=1)
            torch.testing.assert_close(largest.values, expected.values, rtol=0, atol=0)
            picked = (sign * values).T.gather(1, largest.keys)  # each key holds the value kept for it
            torch.testing.assert_close(picked, largest.values, rtol=0, atol=0)
            assert all(len(set(row)) == k for row in largest.keys.tolist())


def test_largest_merges_small_adds_in_pending_groups():
    """Slices smaller than PENDING_ROWS wait and merge together; reading the values merges what waits:
    the same k largest and keys as one topk, whether a read comes between adds or not."""
    from tensorboard_rnn_units.sums import PENDING_ROWS, Largest

    n = 3 * PENDING_ROWS + 1000
    values = torch.randn(n, 4, generator=torch.Generator().manual_seed(2))
    keys = torch.arange(n)
    largest = Largest(8, 4, 1.0, "cpu", torch.float32, keyed=True)
    for a in range(0, n, 1500):
        largest.add([values[a : a + 1500]], keys[a : a + 1500])
        if a == 6000:
            largest.values  # a read between adds
    expected = values.T.topk(8, dim=1)
    torch.testing.assert_close(largest.values, expected.values, rtol=0, atol=0)
    assert torch.equal(largest.keys, expected.indices)
    assert not largest.pending


def test_a_dead_units_ties_do_not_widen_the_sampled_candidates():
    """A unit whose signals all tie (a dead unit's zeros) would make every row a candidate:
    the selection falls back to a plain topk, with the same k largest."""
    from tensorboard_rnn_units.sums import Largest, _above_sampled_threshold

    values = torch.randn(40_000, 4, generator=torch.Generator().manual_seed(1))
    values[:, 2] = 0.0
    assert _above_sampled_threshold([values], 800, keyed=False) is None
    assert _above_sampled_threshold([values[:, [0, 1, 3]]], 800, keyed=False)[0].shape[1] < 4 * 800
    largest = Largest(800, 4, 1.0, "cpu", torch.float32, keyed=False)
    largest.add([values])
    torch.testing.assert_close(largest.values, values.T.topk(800, dim=1).values, rtol=0, atol=0)


def test_leaves_model_mode_parameters_grads_and_rng_untouched():
    module = _model("lstm", num_layers=2, dropout=0.5)
    head = _readout()
    module.train()
    head.eval()
    loss = module(torch.rand(4, 2, D, dtype=torch.float64))[0].sum()
    loss.backward()
    params = {k: v.clone() for k, v in module.state_dict().items()}
    grads = {k: p.grad.clone() for k, p in module.named_parameters()}
    rng = torch.get_rng_state()
    probe = rnn_units.Probe(_data()[0], L, max_windows=20)
    a = rnn_units.compute_unit_features(module, probe, readout=head, rollout=R)
    assert module.training and not head.training
    assert all(m.training for m in module.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in module.state_dict().items():
        assert torch.equal(v, params[k])
    for k, p in module.named_parameters():
        assert torch.equal(p.grad, grads[k])
    module.eval()  # no dropout was applied in train mode either
    b = rnn_units.compute_unit_features(module, probe, readout=head, rollout=R)
    for w in ("top", "relu"):
        torch.testing.assert_close(a[w].average, b[w].average)
        torch.testing.assert_close(a[w].rollout, b[w].rollout)


class SigmoidRNN(nn.Module):
    """A custom model implementing the StepModel protocol."""

    signals = ("preactivation", "hidden")

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell = nn.Linear(input_size + hidden_size, hidden_size).double()

    def initial_state(self, batch_size):
        return (torch.zeros(batch_size, self.hidden_size, dtype=torch.float64),)

    def step(self, x, state, signal):
        pre = self.cell(torch.cat([x, state[0]], 1))
        h = torch.sigmoid(pre)
        return (h,), pre if signal == "preactivation" else h

    def readout_input(self, state):
        return state[0]


def test_custom_step_model():
    torch.manual_seed(0)
    model = SigmoidRNN(D, H)
    x, _ = _data()
    probe = rnn_units.Probe(x, L)
    f = rnn_units.compute_unit_features(model, probe, weighting="top", top_fraction=0.25)
    # Reference by hand: run each window's prefix, take the last pre-activation.
    signals, inputs = [], []
    for n, p in zip(probe.window_sequence.tolist(), probe.window_position.tolist()):
        state = model.initial_state(1)
        for t in range(p + L):
            state, pre = model.step(x[n, t][None].double(), state, "preactivation")
        signals.append(pre[0].detach())
        inputs.append(x[n, p : p + L].double())
    S, X = torch.stack(signals), torch.stack(inputs)
    w = (S - torch.quantile(S, 0.75, dim=0)).clamp_min(0)
    expected = torch.einsum("wu,wld->uld", w, X) / w.sum(0)[:, None, None]
    torch.testing.assert_close(f["top"].average, expected)
    assert f.signal == "preactivation"


def test_saturated_units_weigh_their_tied_top_windows_equally():
    module = _model("rnn").float()
    with torch.no_grad():
        module.weight_ih_l0.mul_(200)  # float32 tanh reaches exactly +-1 on many windows
    x, labels = _data()
    probe = rnn_units.Probe(x, L, labels=labels)
    f = rnn_units.compute_unit_features(module, probe, signal="hidden", weighting="top", top_fraction=0.3)
    windows = list(zip(probe.window_sequence.tolist(), probe.window_position.tolist()))
    ref = reference_features(module, probe.sequences, windows, L, signal="hidden", layer=-1,
                             weighting="top", top_fraction=0.3, labels=labels, num_classes=C)
    S = torch.stack([module(x[n, : p + L][None])[1][0, 0] for n, p in windows]).detach()
    saturated = torch.quantile(S, 0.7, dim=0) >= S.max(0).values
    assert saturated.any(), "the test needs a unit whose top windows tie at its maximum"
    assert not f["top"].dead.any()
    torch.testing.assert_close(f["top"].average, ref["average"].double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f["top"].position_share, ref["position_share"].double(), rtol=1e-5, atol=1e-6)


def test_half_precision_model_and_autocast_give_the_float32_features():
    x, labels = _data()
    probe = rnn_units.Probe(x, L, labels=labels)
    m32 = _model("rnn").float()
    with torch.no_grad():
        m32.bias_ih_l0.fill_(30.0)  # sums of signals over windows overflow float16
    m16 = _model("rnn").half()
    m16.load_state_dict(m32.state_dict())
    kwargs = dict(weighting=("top", "relu"), batch_size=10_000)
    expected = rnn_units.compute_unit_features(m32, probe, **kwargs)
    half = rnn_units.compute_unit_features(m16, probe, **kwargs)
    for w in ("top", "relu"):
        assert torch.isfinite(half.weighted[w].average).all()
        assert torch.isfinite(half.weighted[w].effective_sample_size).all()
    # relu weights are the signals themselves: close despite float16 signals.
    # (top's threshold picks other windows when float16 rounds signals into ties.)
    torch.testing.assert_close(half.weighted["relu"].average, expected.weighted["relu"].average, rtol=0.01, atol=0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = rnn_units.compute_unit_features(m32, probe, **kwargs)
    for w in ("top", "relu"):
        torch.testing.assert_close(autocast.weighted[w].average, expected.weighted[w].average)


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.dropout = _readout(), nn.Dropout(0.5)

    def predict(self, h):
        return self.dropout(self.linear(h))


def test_readout_method_of_a_module_runs_in_eval_mode_and_leaves_the_rng():
    module, head = _model("gru"), _Head()
    head.train()
    probe = rnn_units.Probe(_data()[0], L)
    rng = torch.get_rng_state()
    a = rnn_units.compute_unit_features(module, probe, readout=head.predict, rollout=R)
    b = rnn_units.compute_unit_features(module, probe, readout=head.predict, rollout=R)
    for w in ("top", "relu"):
        torch.testing.assert_close(a[w].rollout, b[w].rollout)  # no dropout noise
    assert head.training and head.dropout.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_readout_that_draws_random_numbers_leaves_the_global_rng():
    module = _model("rnn")
    probe = rnn_units.Probe(_data()[0], L)
    rng = torch.get_rng_state()
    rnn_units.compute_unit_features(
        module, probe, rollout=2, readout=lambda h: torch.rand(h.shape[0], D, dtype=h.dtype)
    )
    assert torch.equal(torch.get_rng_state(), rng)


class MyGRU(nn.GRU):
    """A user's subclass of a supported module."""

    def forward(self, x, h=None):  # the kind of override a user writes; the math is nn.GRU's
        return super().forward(x, h)


def _plain(parametrized, plain):
    """``plain``, an un-parametrized module, loaded with ``parametrized``'s weights as read in eval
    mode (spectral_norm does not power-iterate then); ``parametrized``'s mode is restored."""
    training = parametrized.training
    parametrized.eval()
    with torch.no_grad():
        plain.load_state_dict({name: getattr(parametrized, name) for name, _ in plain.named_parameters()})
    parametrized.train(training)
    return plain


def _gru_subclass():
    torch.manual_seed(1)
    module = MyGRU(D, H, num_layers=2).double()
    return module, module, "hidden"


def _weight_norm_rnn():
    from torch.nn.utils.parametrizations import weight_norm

    module = weight_norm(weight_norm(_model("rnn", num_layers=2), "weight_ih_l0"), "weight_hh_l1")
    return module, _plain(module, _model("rnn", num_layers=2)), "preactivation"


def _spectral_norm_lstm():
    from torch.nn.utils.parametrizations import spectral_norm

    module = spectral_norm(_model("lstm", num_layers=2), "weight_hh_l0").train()  # train mode iterates
    return module, _plain(module, _model("lstm", num_layers=2)), "cell"


@pytest.mark.parametrize("make", [_gru_subclass, _weight_norm_rnn, _spectral_norm_lstm])
def test_subclasses_and_parametrized_modules_match_the_reference(make):
    module, plain, signal = make()
    assert type(module) not in (nn.RNN, nn.GRU, nn.LSTM)
    x, labels = _data()
    probe = rnn_units.Probe(x, L, labels=labels)
    readout = _readout()
    training, state = module.training, {k: v.clone() for k, v in module.state_dict().items()}
    features = rnn_units.compute_unit_features(
        module, probe, readout=readout, rollout=R, layer=0, signal=signal, top_fraction=0.2,
    )
    # Read in eval mode and without autograd: spectral_norm's u and v are untouched.
    assert module.training == training
    for k, v in module.state_dict().items():
        assert torch.equal(v, state[k]), k
    windows = list(zip(probe.window_sequence.tolist(), probe.window_position.tolist()))
    for weighting in ("top", "relu"):
        ref = reference_features(
            plain, probe.sequences.double(), windows, L, signal=signal, layer=0, weighting=weighting,
            top_fraction=0.2, readout=readout, rollout=R, labels=labels, num_classes=C,
        )
        _compare(features, ref, weighting)


def _dropout_head():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(H, D), nn.Dropout(0.5), nn.Sigmoid()).double()


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn, self.head = _model("gru"), _dropout_head()


@pytest.mark.parametrize("form", ["module", "lambda naming the model"])
def test_rollouts_never_run_dropout(form):
    model = _Model().train()
    readout = model.head if form == "module" else lambda h: model.head(h)  # the README's form
    probe = rnn_units.Probe(_data()[0], L)
    run = lambda: rnn_units.compute_unit_features(model.rnn, probe, readout=readout, rollout=R)
    a, b = run(), run()
    assert all(m.training for m in model.modules())
    model.head.eval()  # by hand
    expected = run()
    for w in ("top", "relu"):
        assert torch.equal(a[w].rollout, b[w].rollout)
        assert torch.equal(a[w].rollout, expected[w].rollout)
    assert torch.equal(a.mean_rollout, expected.mean_rollout)


@pytest.mark.parametrize("weighting", [("top", "relu", "bottom"), ("top", "bottom")])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_cpu_slices_equal_whole_batches(kind, weighting, monkeypatch):
    """On a CPU, batches are weighed, rolled out and summed in slices: a few windows a slice gives
    what whole batches give (averages, rollouts, statistics, gates, exemplars), and so do the
    longer slices of "top" and "bottom" without "relu", which roll out only the weighed windows."""
    from tensorboard_rnn_units import features

    model, head = _model(kind), _readout()
    x, labels = _data()
    probe = rnn_units.Probe(x, L, labels=labels)
    run = lambda: rnn_units.compute_unit_features(model, probe, readout=head, rollout=R, exemplars=3,
                                                  weighting=weighting)
    monkeypatch.setattr(features, "CPU_SLICE_BYTES", 2**40)
    whole = run()
    monkeypatch.setattr(features, "CPU_SLICE_BYTES", 3 * H * 8)  # 3 (GRU/RNN) or 1 (LSTM) rows a slice
    monkeypatch.setattr(features, "CPU_SLICE_MIN_ROWS", 1)
    sliced = run()
    close = lambda a, b: torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for name in weighting:
        for field in ("average", "rollout", "active_fraction", "effective_sample_size", "position_share",
                      "class_weight", "exemplar_signal"):
            close(getattr(sliced[name], field), getattr(whole[name], field))
        assert torch.equal(sliced[name].exemplar_sequence, whole[name].exemplar_sequence)
        assert torch.equal(sliced[name].exemplar_end, whole[name].exemplar_end)
    close(sliced.mean_rollout, whole.mean_rollout)
    close(sliced.activation_sample, whole.activation_sample)
    for gate, saturation in (whole.gate_saturation or {}).items():
        close(sliced.gate_saturation[gate], saturation)


def test_slices_hold_about_as_many_rolled_out_windows_as_asked():
    """"top" alone rolls out only the windows some unit weighs: its slices grow by the share rolled
    out so far, up to 4 times the rows asked."""
    from tensorboard_rnn_units.features import Slicer

    slicer = Slicer(100)
    assert slicer.size() == 100
    slicer.count(100, 0)  # none rolled out yet: no share to go by
    assert slicer.size() == 100
    slicer.count(100, 70)
    assert slicer.size() == 286  # 100 / (70 / 200), rounded up
    slicer.count(300, 10)
    assert slicer.size() == 400


@pytest.mark.parametrize("weighting", ["top", ("top", "relu", "bottom")])
def test_sparse_weighted_sums_equal_dense_ones(weighting, monkeypatch):
    """On a CPU, sparse weights ("top" keeps a few windows a unit) are summed through a sparse matrix:
    the same averages and rollouts as dense products, with every window rolled out or only the weighed."""
    model, head = _model("gru"), _readout()
    probe = rnn_units.Probe(_data()[0], L)
    run = lambda: rnn_units.compute_unit_features(model, probe, readout=head, rollout=R, weighting=weighting,
                                                  top_fraction=0.05)
    dense, sparse = support.dense_and_sparse(run, monkeypatch)
    for name in dense.weighted:
        for field in ("average", "rollout", "active_fraction", "effective_sample_size"):
            torch.testing.assert_close(getattr(sparse[name], field), getattr(dense[name], field), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sparse.mean_rollout, dense.mean_rollout, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sparse_weights_give_every_sum_that_dense_ones_do(sign, monkeypatch):
    """The positive weights kept as triples are the dense ones, and give the same sums: counts,
    totals, groups, token index-adds, and narrow or wide products, without a warning (torch
    warns about sparse matrices built from unchecked indices). A tied unit weighs its windows
    at the threshold 1; "relu"'s threshold is a number. A slice with over SPARSE_SHARE of its
    weights positive is weighed dense after all."""
    from tensorboard_rnn_units import weights

    half = weights.Threshold(torch.zeros(4), sparse=True).weights(torch.randn(100, 4))
    few = weights.Threshold(torch.zeros(4), sparse=True).weights(torch.randn(100, 4) - 2.5)  # about 0.6%
    assert isinstance(half, weights.DenseWeights) and isinstance(few, weights.SparseWeights)
    monkeypatch.setattr(weights, "SPARSE_SHARE", 1.0)

    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(500, 11, generator=generator).round(decimals=1)  # ties at the thresholds
    value = sign * torch.quantile(sign * signal, 0.9, dim=0)
    tied = torch.zeros(11, dtype=torch.bool)
    tied[3] = True
    group = torch.randint(7, (500,), generator=generator)
    index = torch.randint(40, (500, 3), generator=generator)
    for threshold in (weights.Threshold(value, tied, sign), weights.Threshold(0.0)):
        dense = threshold.weights(signal.clone())
        threshold.sparse = True
        sparse = threshold.weights(signal)
        assert torch.equal(sparse.weight, dense.w[sparse.row, sparse.unit])
        assert int((dense.w > 0).sum()) == len(sparse.weight) and bool((sparse.weight > 0).all())
        assert torch.equal(sparse.positive_rows(), dense.positive_rows())
        rows = (dense.positive_rows() | (torch.arange(500) % 5 == 0)).nonzero().squeeze(1)  # and some unweighed
        for d, s in ((dense, sparse), (dense.take(rows), sparse.take(rows))):
            assert torch.equal(s.active().double(), d.active().double())
            for got, want in zip(s.totals(torch.float64), d.totals(torch.float64)):
                torch.testing.assert_close(got, want)
            torch.testing.assert_close(s.by_group(group[: d.w.shape[0]], 7).float(), d.by_group(group[: d.w.shape[0]], 7))
            added = [torch.zeros(40, 11, dtype=torch.float64) for _ in range(2)]
            s.add_at(added[0], index[: d.w.shape[0]])
            d.add_at(added[1], index[: d.w.shape[0]])
            torch.testing.assert_close(*added)
            for columns in ((7, 3), (weights.SPARSE_COLUMNS, 5)):
                values = [torch.randn(d.w.shape[0], c, generator=generator) for c in columns]
                for got, v in zip(s.products(values), values):
                    assert got.shape == (v.shape[1], 11)
                    torch.testing.assert_close(got, v.T @ d.w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 2e-7), (torch.float64, 1e-15)])
def test_fast_tanh_agrees_with_torch_tanh(dtype, tolerance):
    from tensorboard_rnn_units.cells import fast_tanh

    x = torch.cat([torch.linspace(-20, 20, 100_001, dtype=dtype), torch.tensor([0.0, 1e-30, -1e-30], dtype=dtype)])
    assert (fast_tanh(x) - torch.tanh(x)).abs().max() <= tolerance
    special = torch.tensor([0.0, 50.0, -50.0, float("inf"), -float("inf")], dtype=dtype)
    assert torch.equal(fast_tanh(special), torch.tensor([0.0, 1.0, -1.0, 1.0, -1.0], dtype=dtype))
    assert fast_tanh(torch.tensor([float("nan")], dtype=dtype)).isnan().all()


def test_a_step_model_with_a_per_window_counter_in_its_state():
    """The protocol's state is any tensors with the batch on dim 0: a (B,) step counter beside (B, H)."""

    class Counting(SigmoidRNN):
        def initial_state(self, batch_size):
            return (*super().initial_state(batch_size), torch.zeros(batch_size, dtype=torch.float64))

        def step(self, x, state, signal):
            (h,), pre = super().step(x, state[:1], signal)
            return (h, state[1] + 1), pre

    torch.manual_seed(0)
    model = Counting(D, H)
    x, _ = _data()
    probe = rnn_units.Probe(x, L)
    plain = SigmoidRNN(D, H)
    plain.load_state_dict(model.state_dict())
    for weighting in ("relu", "top"):
        got = rnn_units.compute_unit_features(model, probe, weighting=weighting)
        expected = rnn_units.compute_unit_features(plain, probe, weighting=weighting)
        torch.testing.assert_close(got[weighting].average, expected[weighting].average)


def test_fast_tanh_leaves_half_precision_to_torch_tanh():
    from tensorboard_rnn_units.cells import fast_tanh

    for dtype in (torch.float16, torch.bfloat16):
        x = torch.tensor([3e-4, -1e-3, 0.5, 5.0], dtype=dtype)
        assert torch.equal(fast_tanh(x), torch.tanh(x))
