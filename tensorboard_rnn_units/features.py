"""compute_unit_features: what input each hidden unit likes, and what follows it.

For every probe window the model runs to the window's end; each unit's
*signal* there (pre-activation, hidden or cell state) becomes a weight
``w >= 0``, and the unit's features are ``w``-weighted averages of the windows
and of the model's own ``R``-step rollouts after them. Everything is batched
over windows and units; sums accumulate over batches on the model's device.

``"top"`` and ``"bottom"`` need each unit's quantile before any weight: a
first pass keeps only each unit's ``top_fraction`` most extreme signals
(``k x H``, not the probe's ``windows x H``). When every window's state
fits in ``KEEP_BYTES`` that pass's batches are kept and are the only pass
(signals alone where they determine the states: ``state_from_signal``);
and without ``"relu"``, only the windows some unit weighs (and the
activation sample's, for the mean rollout) are rolled out.

Token probes feed the RNN ``embed(token)`` (or one-hot tokens) but average
one-hot tokens, accumulated by index rather than by a one-hot matrix
product, and their rollouts average the readout's softmax.

This module checks the arguments and drives the passes; ``windows`` runs
the model over the probe's windows, ``sums`` accumulates and finishes the
features, ``results`` holds what is returned.
"""

import contextlib
import dataclasses
import inspect
import numbers
import os
import sys
import warnings

import torch
from torch import nn

from tensorboard_rnn_units import metadata, worker
from tensorboard_rnn_units.cells import as_step_model
from tensorboard_rnn_units.probe import Probe
from tensorboard_rnn_units.results import UnitFeatures, WeightedFeatures
from tensorboard_rnn_units.sums import Sums
from tensorboard_rnn_units.validation import check_int
from tensorboard_rnn_units.windows import (InputKeepingReadout, Inputs, WindowWalker, feedback_draws, process_shard,
                                           roll_out)

__all__ = ["CONTEXTS", "FEEDBACKS", "UnitFeatures", "WeightedFeatures", "compute_unit_features"]


CONTEXTS = ("prefix", "window")

FEEDBACKS = ("as_is", "argmax", "sample")


def compute_unit_features(
    rnn,
    probe,
    *,
    readout=None,
    rollout=0,
    feedback=None,
    model=None,
    layer=-1,
    signal=None,
    weighting=("top", "relu"),
    top_fraction=0.02,
    context="prefix",
    batch_size=None,
    exemplars=8,
):
    """Computes every unit's weighted-average window and rollout on ``probe``.

    Args:
      rnn: ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` (unidirectional, any
        ``num_layers``, either ``batch_first``), one of their cells, a
        subclass of these (e.g. parametrized by ``weight_norm`` or
        ``spectral_norm``), or a ``StepModel``.
      probe: a ``Probe`` whose inputs (``embed``'s output for tokens) have
        the rnn's ``input_size``.
      readout: callable mapping a ``(B, H_top)`` top-layer hidden state (on
        the model's device and dtype) to a ``(B, D)`` prediction of the next
        input (for a token probe: ``(B, V)`` scores, logits); needed when
        ``rollout > 0``. An ``nn.Module`` or a method of one is put in eval
        mode for the call, so rollouts never run dropout nor update
        BatchNorm statistics. A plain function (a ``lambda``) hides what it
        runs: pass ``model=``. Without it, the modules the function names
        directly (``lambda h: model.head(h)`` names ``model``) are put in
        eval mode too, but not those it reaches through other objects, so a
        function readout with ``rollout > 0`` and no ``model=`` gets a
        ``UserWarning`` (once per process). A readout that changes its
        input in place (``nn.ReLU(inplace=True)`` first) gets a copy.
      rollout: ``R``, the number of predictions fed back after each window.
      feedback: what is fed back after each prediction: ``"as_is"`` (the
        readout's output; the default for continuous inputs), ``"argmax"``
        (its largest entry as a token: embedded, or one-hot; the default
        for tokens) or ``"sample"`` (a token drawn from its softmax, seeded
        by the probe's ``seed``). Token rollouts average the softmax.
      model: the ``nn.Module`` holding the readout's modules (e.g. the whole
        model), put in eval mode for the call and restored after.
      layer: whose units are shown (``-1``: the top layer).
      signal: ``"preactivation"`` (default for RNN), ``"hidden"`` (default
        for GRU/LSTM, allowed for all) or ``"cell"`` (LSTM).
      weighting: ``"relu"`` (``w = max(signal, 0)``), ``"top"``
        (``w = max(signal - q_u, 0)``, ``q_u`` the unit's ``1 - top_fraction``
        quantile over all windows; a unit whose top windows all tie at its
        maximum, as a saturated tanh does, weighs those windows 1),
        ``"bottom"`` (its mirror, what drives a unit negative:
        ``w = max(q_low - signal, 0)``, ``q_low`` the ``top_fraction``
        quantile), or a tuple of them, computed together (windows and
        rollouts are run once); ``("top", "relu")`` by default, as
        ``add_rnn_units`` logs them. The result is indexed by name:
        ``features["top"].average``.
      top_fraction: in ``(0, 1]``, the fraction of windows ``"top"`` and
        ``"bottom"`` keep.
      context: ``"prefix"`` runs from a zero state over the whole sequence up
        to the window's end; ``"window"`` from a zero state at its start.
      batch_size: windows processed together; ``None``: ``CPU_BATCH``
        (8,192) on a CPU; on a GPU as many as hold about
        ``GPU_BATCH_BYTES`` (256 MB) of states, signals, window inputs and
        rollout predictions, at least 8,192 (a small layer's batches of
        8,192 leave a GPU waiting for kernel launches).
      exemplars: ``k``, how many of its best windows each unit keeps.

    Returns:
      ``UnitFeatures``. Runs without autograd or autocast, with ``rnn``,
      ``readout``, ``model`` and the probe's ``embed`` in eval mode (restored
      after); parameters, gradients, BatchNorm statistics and RNG states are
      untouched.

    Raises:
      TypeError: ``rnn``, ``probe`` or ``model`` of an unsupported type.
      ValueError: any other bad argument, naming it, or non-finite results.
    """
    stepper = as_step_model(rnn, layer)
    if not isinstance(probe, Probe):
        raise TypeError(f"probe: expected a tensorboard_rnn_units.Probe, got {type(probe).__name__}")
    if probe.vocab is None and probe.input_size != stepper.input_size:
        raise ValueError(
            f"probe: inputs have D={probe.input_size}, but the rnn's input_size is {stepper.input_size}"
        )
    if probe.vocab is not None and probe.embed is None and probe.input_size != stepper.input_size:
        raise ValueError(
            f"probe: one-hot tokens have V={probe.input_size} (its vocab), but the rnn's input_size is "
            f"{stepper.input_size}; pass the probe embed= (e.g. the model's nn.Embedding)"
        )
    weightings = (weighting,) if isinstance(weighting, str) else weighting
    if (
        not isinstance(weightings, (tuple, list))
        or not weightings
        or len(set(weightings)) != len(weightings)
        or not set(weightings) <= set(metadata.WEIGHTINGS)
    ):
        raise ValueError(
            f"weighting: expected one of {metadata.WEIGHTINGS} or a tuple of distinct ones, got {weighting!r}"
        )
    signal = stepper.signals[0] if signal is None else signal
    if signal not in stepper.signals:
        raise ValueError(
            f"signal: {type(rnn).__name__} offers {tuple(stepper.signals)}, got {signal!r}"
        )
    rollout = check_int("rollout", rollout, 0)
    if rollout > 0 and not callable(readout):
        raise ValueError("readout: a callable (B, H_top) -> (B, D) is required when rollout > 0")
    feedback = ("argmax" if probe.vocab is not None else "as_is") if feedback is None else feedback
    if feedback not in FEEDBACKS:
        raise ValueError(f"feedback: expected one of {FEEDBACKS} or None, got {feedback!r}")
    if feedback == "as_is" and probe.embed is not None:
        raise ValueError(
            "feedback: 'as_is' feeds the readout's scores back, which embed= cannot take; "
            "use 'argmax' or 'sample'"
        )
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model: expected the nn.Module that holds the readout's modules, got {type(model).__name__}")
    if rollout > 0 and model is None and not _is_module_readout(readout):
        _warn_once_about_function_readout()
    if isinstance(top_fraction, bool) or not isinstance(top_fraction, numbers.Real) or not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction: expected a number in (0, 1], got {top_fraction!r}")
    if context not in CONTEXTS:
        raise ValueError(f"context: expected one of {CONTEXTS}, got {context!r}")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1, hint=" or None (the device's default)")
    exemplars = check_int("exemplars", exemplars, 0)

    state = stepper.initial_state(1)[0]
    device, dtype = state.device, state.dtype
    # The first step reads TorchRecurrent's weights: inside, in eval mode (see cells.py).
    with _measuring(device, rnn, model, probe.embed, *_readout_objects(readout)):
        inputs = Inputs(probe, stepper.input_size, device, dtype)
        shard = process_shard()
        batch_size = batch_size or _default_batch(stepper, probe, rollout, device)
        walker = WindowWalker(stepper, inputs, probe, signal, context, batch_size, device, shard)
        sums = Sums(probe, tuple(weightings), stepper, rollout, exemplars, top_fraction, walker, device, dtype)
        batches = walker.batches(with_state=rollout > 0)
        derive = None  # maps kept signals to the states after them, when they determine these
        quantiles = [name for name in weightings if name != "relu"]
        if quantiles:
            # A first pass finds the thresholds from each unit's largest (smallest) signals.
            # When every window's state fits in memory it is the only pass: its batches are kept
            # (a loader's are not: its memory must not grow with the probe), without the states
            # where the signals determine them.
            if rollout > 0:
                derive = getattr(stepper, "state_from_signal", lambda signal: None)(signal)
            keep_states = rollout > 0 and derive is None
            keep = probe.loader is None and \
                _state_bytes(probe, stepper, dtype, with_state=keep_states) / shard[1] <= KEEP_BYTES
            first = walker.batches(with_state=keep_states and keep)
            derive = derive if keep else None
            if keep:  # one selection over every batch's signals, not one merge per batch
                batches = list(first)
                if batches:  # a rank can have none
                    sums.candidates([batch.signal for batch in batches])
            else:
                for batch in first:
                    sums.candidates([batch.signal])
            for name in quantiles:
                sums.thresholds[name] = sums.threshold(name, top_fraction)
        slicer = Slicer(_slice_rows(stepper, device))
        readout = InputKeepingReadout(readout)
        wholes = (_with_feedback_draws(whole, feedback, rollout, probe) for whole in batches)
        for batch in (part for whole in wholes for part in whole.slices(slicer.size)):
            predictions, weighed = None, sums.weigh(batch)
            rows = weighed.rows
            slicer.count(batch.signal.shape[0], batch.signal.shape[0] if rows is None else rows.numel())
            if rollout > 0 and (rows is None or rows.numel()):
                pick = (lambda t: t) if rows is None else (lambda t: t[rows])  # only the windows some unit weighs
                state = derive(pick(batch.signal)) if derive else tuple(pick(s) for s in batch.state)
                draws = None if batch.draws is None else pick(batch.draws)
                predictions = roll_out(stepper, readout, state, rollout, inputs, signal, feedback, draws)
            sums.add(batch, walker.windows(batch), predictions, weighed)
        return sums.result(probe, signal, stepper, context, top_fraction)


# On a CPU, batches are weighed, rolled out and summed in slices of about
# this many bytes of state: a slice's temporaries stay in cache across the
# R rollout steps (their matrix products run about twice as fast as over a
# whole batch) and are reused by the allocator instead of being mapped
# afresh (page faults cost as much as the elementwise work itself).
# A slice holds at least CPU_SLICE_MIN_ROWS windows: a wide layer's step
# reads its weight matrices once per slice, and a 4,096-unit RNN ran 3
# times slower in slices of 64 windows than whole (as fast from 1,024 on).
# A GPU takes whole batches.
CPU_SLICE_BYTES = 2**20
CPU_SLICE_MIN_ROWS = 1024


# Windows per batch when batch_size is None. On a CPU batches are cut into
# slices (above), so their size matters little. On a GPU a small layer's
# time at 8,192 windows goes to launching kernels, not to their work: on an
# H200, 169 units over 190,000 windows took 158 ms in batches of 8,192,
# 48 ms in 32,768 and 24 ms in 131,072 (the results equal within 8e-7);
# 4,096 units took 326 and 303 ms. A GPU batch holds about GPU_BATCH_BYTES
# of each window's state, signal, inputs and rollout predictions (a large
# vocabulary's predictions keep it at CPU_BATCH); its temporaries peak at
# about twice that (1.5 GB for one batch of 190,000 MNIST windows of 169
# units, 3,592 bytes each, L = R = 10).
CPU_BATCH = 8192
GPU_BATCH_BYTES = 256 * 2**20


def _default_batch(model, probe, rollout, device):
    """Windows per batch when the caller gives none: ``CPU_BATCH`` on a CPU,
    else ``GPU_BATCH_BYTES`` of per-window tensors (at least ``CPU_BATCH``)."""
    if device.type == "cpu":
        return CPU_BATCH
    element = model.initial_state(1)[0].element_size()
    values = model.hidden_size + (probe.window + rollout) * probe.input_size  # signal, inputs, predictions
    return max(CPU_BATCH, GPU_BATCH_BYTES // (_state_row_bytes(model) + values * element))


def _with_feedback_draws(batch, feedback, rollout, probe):
    """``batch`` with the draws that sample its rollouts' fed-back tokens, when they are sampled."""
    if feedback != "sample" or rollout < 2:
        return batch
    return dataclasses.replace(batch, draws=feedback_draws(batch, rollout, probe.seed, probe.positions))


class Slicer:
    """Windows per slice: enough for about ``rows`` rolled out. ``"top"`` alone
    rolls out only the windows some unit weighs (70% on MNIST), so its slices
    take as many more windows as the share rolled out so far says (at most 4
    times as many): its rollouts run in slices as full as ``"relu"``'s (3%
    faster on MNIST than slices of ``rows`` windows)."""

    def __init__(self, rows):
        self.rows, self.windows, self.rolled = rows, 0, 0

    def size(self):
        return self.rows if not self.rolled else min(4 * self.rows, -(-self.rows * self.windows // self.rolled))

    def count(self, windows, rolled):
        self.windows += windows
        self.rolled += rolled


def _slice_rows(model, device):
    """Windows per slice: ``CPU_SLICE_BYTES`` of state (at least ``CPU_SLICE_MIN_ROWS``) on a CPU, else unbounded."""
    if device.type != "cpu":
        return sys.maxsize
    return max(CPU_SLICE_MIN_ROWS, CPU_SLICE_BYTES // max(1, _state_row_bytes(model)))


def _state_row_bytes(model):
    """Bytes of one window's state (any shape after the batch dim)."""
    return sum(s[0].numel() * s.element_size() for s in model.initial_state(1))


# Keep the first pass's batches (signals and states of every window) up to
# this many bytes instead of running the model over the probe twice.
KEEP_BYTES = 512 * 2**20


def _state_bytes(probe, model, dtype, with_state):
    """Bytes the first pass's batches hold for every window: signals, gates and states."""
    signals = model.hidden_size * (1 + len(getattr(model, "gate_names", ())))  # and gates
    per_window = signals * torch.empty((), dtype=dtype).element_size() + (_state_row_bytes(model) if with_state else 0)
    return probe.num_windows * per_window


def _is_module_readout(readout):
    """Whether ``readout`` is an ``nn.Module`` or a bound method of one."""
    return isinstance(readout, nn.Module) or isinstance(getattr(readout, "__self__", None), nn.Module)


_warned_function_readout = False  # the warning below is given once per process


def _warn_once_about_function_readout():
    global _warned_function_readout
    if _warned_function_readout:
        return
    _warned_function_readout = True
    warnings.warn(
        "readout: a function may run modules this package cannot see; pass model= (e.g. model=model, the "
        "nn.Module holding the readout's layers) so that dropout and BatchNorm in the readout run in eval "
        "mode while the units are measured (warned once per process)",
        UserWarning,
        stacklevel=_user_stacklevel(),
    )


def _user_stacklevel():
    """``stacklevel`` for a warning raised by this function's caller that points at the first
    frame outside this package: the user's call."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2  # the caller's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _readout_objects(readout):
    """What ``readout`` may run: itself, a bound method's object and, for a
    plain function, what it names (``lambda h: model.head(h)`` names
    ``model``), so that their modules are put in eval mode too."""
    objects = [readout, getattr(readout, "__self__", None)]
    if inspect.isfunction(readout):
        with contextlib.suppress(ValueError):  # a closure variable not assigned yet
            names = inspect.getclosurevars(readout)
            objects += [*names.nonlocals.values(), *names.globals.values()]
    return objects


@contextlib.contextmanager
def _measuring(device, *objects):
    """No grad, no autocast, forked RNG (not in ``add_rnn_units``' background
    worker: see ``worker.state``), eval mode for every ``nn.Module``
    among ``objects``; modes restored after."""
    modes = [(m, m.training) for o in objects if isinstance(o, nn.Module) for m in o.modules()]
    rng = contextlib.nullcontext() if getattr(worker.state, "active", False) else \
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    try:
        for m, _ in modes:
            m.training = False
        with torch.no_grad(), torch.autocast(device.type, enabled=False), rng:
            yield
    finally:
        for m, mode in modes:
            m.training = mode
