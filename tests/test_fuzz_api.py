"""Hostile inputs to the summary API (property tests): random shapes (0- and
1-size dimensions included), dtypes, NaN/Inf, extreme and subnormal values
into ``Probe`` and ``compute_unit_features`` with small RNN/GRU/LSTM models.

Every call either returns features whose arrays are finite and shaped as
``UnitFeatures``/``WeightedFeatures`` document, or raises ``ValueError`` or
``TypeError`` naming an argument; never another exception, never NaN.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import support
import tensorboard_rnn_units as rnn_units

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

# An argument's name opens every error message: "sequences: ...", "rnn: ...".
ARGUMENTS = ("sequences", "window", "labels", "class_names", "max_windows", "seed", "sample_size", "display",
             "rnn", "probe", "readout", "rollout", "model", "layer", "signal", "weighting", "top_fraction",
             "context", "batch_size")
NAMED = re.compile(rf"^({'|'.join(ARGUMENTS)}):")

EXTREMES = [0.0, -0.0, 1.0, -1.0, 1e30, -1e30, 1e-30, 1e-40, -1e-45, 5e-324, 1e300, -1e300,
            float("nan"), float("inf"), -float("inf"), 65504.0, 70000.0, 3.4e38]
# Mostly what models take; the rest now and then.
DTYPES = [torch.float32] * 3 + [torch.float64] * 3 + [torch.float16, torch.bfloat16, torch.int8, torch.int64,
                                                      torch.uint8, torch.bool, torch.complex64]


def _expect_named_error(call):
    """``call()``; a ``ValueError``/``TypeError`` must name the argument at fault.
    Returns the result, or ``None`` after such an error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # function readouts warn once
            return call()
    except (ValueError, TypeError) as e:
        assert NAMED.match(str(e)), f"error does not name an argument: {e!r}"
        return None


@st.composite
def sequences(draw, max_n=4, max_t=6, max_d=3):
    """``(N, T, D)`` tensors of any dtype, with extremes mixed in; now and then
    with a 0-size dimension or another rank."""
    shape = [draw(st.integers(1, max_n)), draw(st.integers(1, max_t)), draw(st.integers(1, max_d))]
    odd = draw(st.sampled_from(["no"] * 8 + ["zero", "rank"]))
    if odd == "zero":
        shape[draw(st.integers(0, 2))] = 0
    elif odd == "rank":
        shape = draw(st.lists(st.integers(0, 3), max_size=4).filter(lambda s: len(s) != 3))
    dtype = draw(st.sampled_from(DTYPES))
    count = int(np.prod(shape))
    values = torch.from_numpy(np.asarray(
        draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=count, max_size=count)), dtype=np.float64
    )).reshape(shape)
    if count and draw(st.booleans()):  # a few extremes
        flat = values.view(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, count - 1))] = draw(st.sampled_from(EXTREMES))
    if dtype.is_complex:
        return values.to(dtype) * (1 + 1j)
    if not dtype.is_floating_point:
        values = values.nan_to_num(0.0, 0.0, 0.0).clamp(-100, 100)
    return values.to(dtype)


def _check_probe(probe, x, window):
    n, t, d = x.shape
    assert probe.sequences.shape == (n, t, d) and probe.window == window
    assert torch.isfinite(probe.sequences).all()
    assert 1 <= probe.num_windows <= n * (t - window + 1)
    assert probe.positions == t - window + 1
    assert 1 <= probe.sample.numel() <= probe.num_windows
    assert re.fullmatch(r"[0-9a-f]{16}", probe.fingerprint)


@settings(max_examples=100, **SETTINGS)
@given(
    x=sequences(),
    window=st.one_of(st.integers(-1, 7), st.sampled_from([None, 2.5, "2", True])),
    labels=st.one_of(st.none(), st.lists(st.integers(-1, 12), min_size=0, max_size=5),
                     st.sampled_from([[0.5, 1.0], [True, False], "ab"])),
    max_windows=st.one_of(st.none(), st.integers(-1, 40), st.just(10**12)),
    sample_size=st.one_of(st.integers(-1, 40), st.just(1)),
)
def test_probe_builds_or_names_the_bad_argument(x, window, labels, max_windows, sample_size):
    probe = _expect_named_error(lambda: rnn_units.Probe(
        x, window, labels=labels, max_windows=max_windows, sample_size=sample_size
    ))
    if probe is not None:
        _check_probe(probe, x, window)


def _model(kind, cell, input_size, hidden, layers, dtype, scale):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if cell:
            rnn = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}[kind](input_size, hidden)
        else:
            rnn = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](
                input_size, hidden, num_layers=layers, batch_first=True
            )
        readout = nn.Linear(hidden, input_size)
    with torch.no_grad():
        for p in rnn.parameters():
            p.mul_(scale)
    return rnn.to(dtype), readout.to(dtype)


def _check_features(features, probe, hidden, rollout, weightings, labelled):
    """Finite everywhere and shaped as documented."""
    h, w, d, p = hidden, probe.window, probe.input_size, probe.positions
    c = probe.num_classes
    assert features.weightings == tuple(weightings)
    shapes = {
        "signal_mean": (h,), "signal_max": (h,), "mean_window": (w, d),
        "activation_sample": (h, probe.sample.numel()),
        "mean_rollout": (rollout, d) if rollout else None,
        "class_counts": (c,) if labelled else None,
    }
    for name, shape in shapes.items():
        value = getattr(features, name)
        if shape is None:
            assert value is None, name
        else:
            assert tuple(value.shape) == shape, (name, value.shape, shape)
            assert torch.isfinite(value).all(), name
    assert features.num_windows == probe.num_windows and features.units == h
    for name in weightings:
        wf = features[name]
        shapes = {
            "average": (h, w, d), "rollout": (h, rollout, d) if rollout else None,
            "active_fraction": (h,), "effective_sample_size": (h,), "position_share": (h, p),
            "class_weight": (h, c) if labelled else None, "dead": (h,),
        }
        for field, shape in shapes.items():
            value = getattr(wf, field)
            if shape is None:
                assert value is None, (name, field)
            else:
                assert tuple(value.shape) == shape, (name, field, value.shape, shape)
                assert torch.isfinite(value).all(), (name, field, value)
        assert wf.dead.dtype == torch.bool
        assert ((wf.active_fraction >= 0) & (wf.active_fraction <= 1)).all()
        assert ((wf.effective_sample_size >= 0) & (wf.effective_sample_size <= 1 + 1e-6)).all(), (
            name, wf.effective_sample_size)
        live = ~wf.dead
        assert torch.allclose(wf.position_share[live].sum(1), torch.ones(int(live.sum()), dtype=torch.float64))
    # What add_rnn_units would log encodes and stays finite (float16/float32 on the wire).
    summary = rnn_units.rnn_units_pb("t", features)
    _, logged = support.decode_logged_step(list(summary.value[0].tensor.string_val))
    for name, array in logged.items():
        if name == "time_constant":  # inf: a saturated forget gate never forgets
            assert (array >= 0).all(), array
        else:
            assert np.isfinite(array.astype(np.float64)).all(), name


# At most one argument of a call is a mistake; the rest are valid, so most
# calls get to the arithmetic.
MISTAKES = {
    "none": {},
    "readout_nan": {"readout": "nan"},
    "readout_shape": {"readout": "wrong_shape"},
    "readout_missing": {"readout": "none"},
    "weighting_twice": {"weighting": ("top", "top")},
    "weighting_unknown": {"weighting": "x"},
    "weighting_empty": {"weighting": ()},
    "top_fraction_zero": {"top_fraction": 0.0},
    "top_fraction_big": {"top_fraction": 1.5},
    "top_fraction_nan": {"top_fraction": float("nan")},
    "context": {"context": "suffix"},
    "batch_size": {"batch_size": 0},
}


@st.composite
def valid_sequences(draw):
    """Mostly valid ``(N, T, D)`` floats with extremes mixed in; sometimes anything ``sequences`` makes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(sequences(max_n=3, max_t=5, max_d=3))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    x = torch.from_numpy(np.asarray(draw(st.lists(
        st.floats(-3, 3), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))
    )))).reshape(shape)
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            x.view(-1)[draw(st.integers(0, x.numel() - 1))] = draw(st.sampled_from(EXTREMES))
    return x.to(draw(st.sampled_from([torch.float32, torch.float64, torch.float16])))


@settings(max_examples=300, **SETTINGS)
@given(
    x=valid_sequences(),
    kind=st.sampled_from(["rnn", "gru", "lstm"]),
    cell=st.booleans(),
    hidden=st.integers(1, 4),
    layers=st.integers(1, 2),
    model_dtype=st.sampled_from([torch.float32, torch.float64]),
    scale=st.sampled_from([1.0, 1.0, 0.0, 1e-30, 1e-20, 1e20, 1e30]),
    window=st.integers(1, 4),
    labelled=st.booleans(),
    max_windows=st.one_of(st.none(), st.integers(1, 6)),
    sample_size=st.integers(1, 5),
    rollout=st.integers(0, 3),
    readout_kind=st.sampled_from(["module", "function", "huge"]),
    weighting=st.sampled_from([("top", "relu"), "top", "relu", ("relu", "top")]),
    top_fraction=st.one_of(st.floats(1e-6, 1.0), st.sampled_from([1e-9, 0.02, 1.0])),
    context=st.sampled_from(["prefix", "window"]),
    batch_size=st.sampled_from([1, 2, 8192]),
    mistake=st.sampled_from(["none"] * 12 + sorted(MISTAKES)),
)
def test_features_are_finite_and_shaped_or_the_bad_argument_is_named(
    x, kind, cell, hidden, layers, model_dtype, scale, window, labelled, max_windows, sample_size, rollout,
    readout_kind, weighting, top_fraction, context, batch_size, mistake,
):
    labels = None
    if labelled and x.dim() == 3:
        labels = torch.arange(x.shape[0]) % 3
    if x.dim() == 3 and x.shape[1] >= 1:
        window = min(window, x.shape[1])  # a valid window: the features are the point here
    probe = _expect_named_error(lambda: rnn_units.Probe(
        x, window, labels=labels, max_windows=max_windows, sample_size=sample_size
    ))
    if probe is None:
        return
    arguments = dict(readout=readout_kind, rollout=rollout, weighting=weighting, top_fraction=top_fraction,
                     context=context, batch_size=batch_size)
    arguments.update(MISTAKES[mistake])
    if mistake.startswith("readout"):
        arguments["rollout"] = max(1, rollout)
    d = probe.input_size
    rnn, linear = _model(kind, cell, d, hidden, layers, model_dtype, scale)
    kind_of_readout = arguments["readout"]
    arguments["readout"] = {
        "module": linear,
        "function": lambda h: torch.tanh(linear(h)),
        "nan": lambda h: torch.full((h.shape[0], d), float("nan"), dtype=h.dtype),
        "huge": lambda h: torch.full((h.shape[0], d), 1e30, dtype=h.dtype),
        "wrong_shape": lambda h: h[:, :1].repeat(1, d + 1),
        "none": None,
    }[kind_of_readout]
    model = linear if kind_of_readout == "function" else None
    features = _expect_named_error(lambda: rnn_units.compute_unit_features(rnn, probe, model=model, **arguments))
    if features is not None:
        assert mistake == "none", f"{mistake} was not refused"
        weightings = (weighting,) if isinstance(weighting, str) else weighting
        _check_features(features, probe, hidden, arguments["rollout"], weightings, labels is not None)


# What the fuzzing above found, pinned: float32 products that overflowed into NaN
# averages, and weights whose squares under- or overflowed float32 (an effective
# sample size of 1e236, or 0 for a live unit).
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize(
    "value,sequence_dtype,model_dtype,scale",
    [
        (1e30, torch.float32, torch.float32, 1.0),
        (3.4e38, torch.float32, torch.float32, 1.0),
        (1e300, torch.float64, torch.float32, 1.0),
        (1e300, torch.float64, torch.float64, 1.0),
        (1.0, torch.float32, torch.float32, 1e-30),
        (1.0, torch.float32, torch.float32, 1e20),
        (1.0, torch.float32, torch.float32, 1e30),
    ],
)
def test_extremes_give_finite_features_or_a_named_error(kind, value, sequence_dtype, model_dtype, scale):
    x = torch.randn(3, 5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, 2, 1], x[1, 3, 0] = value, -value
    probe = _expect_named_error(lambda: rnn_units.Probe(x.to(sequence_dtype), 2, labels=[0, 1, 0]))
    if probe is None:
        return
    rnn, readout = _model(kind, False, 2, 3, 1, model_dtype, scale)
    features = _expect_named_error(lambda: rnn_units.compute_unit_features(rnn, probe, readout=readout, rollout=2))
    if features is not None:
        _check_features(features, probe, 3, 2, ("top", "relu"), True)
