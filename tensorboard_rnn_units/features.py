"""compute_unit_features: what input each hidden unit likes, and what follows it.

For every probe window the model runs to the window's end; each unit's
*signal* there (pre-activation, hidden or cell state) becomes a weight
``w >= 0``, and the unit's features are ``w``-weighted averages of the windows
and of the model's own ``R``-step rollouts after them. Everything is batched
over windows and units; sums accumulate over batches on the model's device.

``"top"`` and ``"bottom"`` need each unit's quantile before any weight: a
first pass keeps only each unit's ``top_fraction`` most extreme signals
(``k x H``, not the probe's ``windows x H``). When every window's state
fits in ``KEEP_BYTES`` that pass's batches are kept and are the only pass;
and without ``"relu"``, only the windows some unit weighs (and the
activation sample's, for the mean rollout) are rolled out.

Token probes feed the RNN ``embed(token)`` (or one-hot tokens) but average
one-hot tokens, accumulated by index rather than by a one-hot matrix
product, and their rollouts average the readout's softmax.
"""

import contextlib
import dataclasses
import inspect
import numbers
import os
import sys
import warnings
from typing import Dict, Optional

import torch
from torch import nn

from tensorboard_rnn_units import metadata
from tensorboard_rnn_units.cells import as_step_model
from tensorboard_rnn_units.probe import Probe
from tensorboard_rnn_units.validation import check_int

CONTEXTS = ("prefix", "window")

FEEDBACKS = ("as_is", "argmax", "sample")

# Gate activations below LOW or above HIGH count as saturated.
SATURATION = (0.1, 0.9)


@dataclasses.dataclass(frozen=True)
class WeightedFeatures:
    """One weighting's per-unit results (float64 tensors on the CPU).

    Attributes:
      average: ``(H, L, D)`` weighted-average window; zeros for a dead unit.
      rollout: ``(H, R, D)`` weighted-average rollout, or ``None`` when R = 0.
      active_fraction: ``(H,)`` fraction of windows with positive weight.
      effective_sample_size: ``(H,)`` ``(sum w)^2 / (sum w^2 * n)``; low = selective.
      position_share: ``(H, P)`` share of the unit's weight per window end position.
      class_weight: ``(H, C)`` mean weight per class, or ``None`` without labels.
      dead: ``(H,)`` bool, all weights zero.
      exemplar_sequence: ``(H, k)`` int64 probe sequence of each unit's ``k``
        highest-weighted windows, best first (for ``"bottom"``: lowest signals).
      exemplar_end: ``(H, k)`` int64 their end ``e``: the window is inputs ``e - L .. e - 1``.
      exemplar_signal: ``(H, k)`` the unit's signal at their last step.
    """

    average: torch.Tensor
    rollout: Optional[torch.Tensor]
    active_fraction: torch.Tensor
    effective_sample_size: torch.Tensor
    position_share: torch.Tensor
    class_weight: Optional[torch.Tensor]
    dead: torch.Tensor
    exemplar_sequence: torch.Tensor
    exemplar_end: torch.Tensor
    exemplar_signal: torch.Tensor


@dataclasses.dataclass(frozen=True)
class UnitFeatures:
    """Per-unit features of one model on one probe.

    Each weighting's results are indexed by name, ``features["top"]``, in
    the order of ``features.weightings``; ``weighted`` is the same dict.
    ``probe_fingerprint`` is ``Probe.fingerprint``, to tell which probe the
    features were measured on; ``probe_data`` is the probe's own (CPU)
    tokens or sequences, not a copy, logged once per run for exemplars.

    ``annotation_correlation[name]`` ``(H,)``: Pearson correlation, over the
    windows, of each unit's signal at a window's last step with the
    annotation there (0 where either is constant). ``gate_saturation[gate]``
    ``(H,)``: fraction of windows whose gate activation at the last step is
    below 0.1 or above 0.9; ``time_constant`` ``(H,)``: ``-1 / log m`` of the
    mean keep gate ``m`` (LSTM forget, GRU update), in steps (inf: never
    forgets); both ``None`` for cells without gates.
    """

    weighted: Dict[str, WeightedFeatures]
    signal_mean: torch.Tensor  # (H,)
    signal_max: torch.Tensor  # (H,)
    activation_sample: torch.Tensor  # (H, S) float32 signal on the probe's activation sample
    mean_window: torch.Tensor  # (L, D)
    mean_rollout: Optional[torch.Tensor]  # (R, D); without "relu", over the activation sample's windows
    class_counts: Optional[torch.Tensor]  # (C,) windows per class
    class_names: Optional[list]
    signal: str
    layer: int
    context: str
    top_fraction: float
    num_windows: int
    display: str
    probe_fingerprint: str
    probe_data: torch.Tensor
    vocab: Optional[list]
    channel_names: Optional[list]
    annotation_correlation: Dict[str, torch.Tensor]
    gate_saturation: Optional[Dict[str, torch.Tensor]]
    time_constant: Optional[torch.Tensor]

    def __getitem__(self, weighting):
        try:
            return self.weighted[weighting]
        except (KeyError, TypeError):
            raise KeyError(f"weighting {weighting!r} was not computed; these were {self.weightings}") from None

    # Not a mapping: without this, iter() and `in` would call __getitem__(0), (1), ...
    __iter__ = None

    def __getattr__(self, name):  # only called when normal lookup fails
        hint = ""
        if name in WeightedFeatures.__dataclass_fields__:
            hint = f"; index the weighting first, e.g. features['top'].{name}"
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{hint}")

    @property
    def weightings(self):
        """The weighting names, in the order they were asked for."""
        return tuple(self.weighted)

    @property
    def units(self):
        return self.signal_mean.shape[0]

    @property
    def window(self):
        return self.mean_window.shape[0]

    @property
    def input_size(self):
        return self.mean_window.shape[1]

    @property
    def rollout_steps(self):
        return 0 if self.mean_rollout is None else self.mean_rollout.shape[0]

    @property
    def positions(self):
        return next(iter(self.weighted.values())).position_share.shape[1]


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
    batch_size=8192,
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
        ``UserWarning`` (once per process).
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
      batch_size: windows processed together.
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
    if probe.tokens is None and probe.input_size != stepper.input_size:
        raise ValueError(
            f"probe: inputs have D={probe.input_size}, but the rnn's input_size is {stepper.input_size}"
        )
    if probe.tokens is not None and probe.embed is None and probe.input_size != stepper.input_size:
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
    feedback = ("argmax" if probe.tokens is not None else "as_is") if feedback is None else feedback
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
    batch_size = check_int("batch_size", batch_size, 1)
    exemplars = check_int("exemplars", exemplars, 0)

    state = stepper.initial_state(1)[0]
    device, dtype = state.device, state.dtype
    # The first step reads TorchRecurrent's weights: inside, in eval mode (see cells.py).
    with _measuring(device, rnn, model, probe.embed, *_readout_objects(readout)):
        inputs = _Inputs(probe, stepper.input_size, device, dtype)
        shard = process_shard()
        walker = _WindowWalker(stepper, inputs, probe, signal, context, batch_size, device, shard)
        sums = _Sums(probe, tuple(weightings), stepper, rollout, exemplars, top_fraction, walker, device, dtype)
        batches = walker.batches(with_state=rollout > 0)
        quantiles = [name for name in weightings if name != "relu"]
        if quantiles:
            # A first pass finds the thresholds from each unit's largest (smallest) signals.
            # When every window's state fits in memory it is the only pass: its batches are kept
            # (a loader's are not: its memory must not grow with the probe).
            keep = probe.loader is None and \
                _state_bytes(probe, stepper, dtype, with_state=rollout > 0) / shard[1] <= KEEP_BYTES
            first = walker.batches(with_state=rollout > 0 and keep)
            if keep:  # one topk over every signal, not one merge per batch
                batches = list(first)
                if batches:  # a rank can have none
                    sums.candidates(torch.cat([batch.signal.T for batch in batches], 1).T)
            else:
                for batch in first:
                    sums.candidates(batch.signal)
            for name in quantiles:
                sums.thresholds[name] = sums.threshold(name, top_fraction)
        for batch in batches:
            predictions, rows = None, sums.weighed_rows(batch)
            if rollout > 0:
                if rows is None or rows.numel():
                    state = batch.state if rows is None else tuple(s[rows] for s in batch.state)
                    predictions = _roll_out(stepper, readout, state, rollout, inputs, signal, feedback)
            sums.add(batch, walker.windows(batch), predictions, rows)
        return sums.result(probe, signal, stepper, context, top_fraction)


def process_shard():
    """``(rank, world size)`` of the default ``torch.distributed`` process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# Keep the first pass's batches (signals and states of every window) up to
# this many bytes instead of running the model over the probe twice.
KEEP_BYTES = 512 * 2**20


def _state_bytes(probe, model, dtype, with_state):
    """Bytes the first pass's batches hold for every window: signals, gates and states."""
    per_window = model.hidden_size * (1 + len(getattr(model, "gate_names", ())))
    if with_state:
        per_window += sum(s.shape[1] for s in model.initial_state(1))
    return probe.num_windows * per_window * torch.empty((), dtype=dtype).element_size()


class _Inputs:
    """The probe's inputs as the RNN reads them, and its windows as they are averaged.

    Continuous probes are both. Token probes average one-hot tokens (``D = V``)
    and feed ``embed(token)`` or one-hot tokens to the RNN.
    """

    def __init__(self, probe, model_input_size, device, dtype):
        self.data, self.labels, self.annotations = probe.on(device, dtype)
        self.tokens = probe.vocab is not None
        self.size, self.window, self.embed, self.dtype = probe.input_size, probe.window, probe.embed, dtype
        self.seed, self.device, self.model_input_size = probe.seed, device, model_input_size
        self.checked = self.embed is None

    def at(self, values):
        """What the RNN reads for ``values``, rows of the probe at one step
        (``(B, D)`` inputs, or ``(B,)`` tokens)."""
        if not self.tokens:
            return values
        return self.token_inputs(values)

    def token_inputs(self, tokens):
        if self.embed is None:
            return nn.functional.one_hot(tokens, self.size).to(self.dtype)
        x = self.embed(tokens)
        if not self.checked:
            if not isinstance(x, torch.Tensor) or x.shape != (len(tokens), self.model_input_size) \
                    or not x.is_floating_point():
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"probe: its embed maps {len(tokens)} tokens to {got}, expected (B, E) floats with E = the "
                    f"rnn's input_size {self.model_input_size}"
                )
            self.checked = True
        return x.to(self.dtype)

    def windows(self, data, sequence, position):
        """Windows ending at ``position + L`` of rows ``sequence`` of ``data``:
        ``(B, L, D)`` inputs or ``(B, L)`` tokens."""
        steps = position[:, None] + torch.arange(self.window, device=position.device)
        return data[sequence[:, None], steps]


@dataclasses.dataclass
class _Batch:
    sequence: torch.Tensor  # (B,) window's sequence index in the probe, on the model's device
    position: torch.Tensor  # (B,) window's end position minus L, likewise
    signal: torch.Tensor  # (B, H) at the window's last step
    state: Optional[tuple]  # state after the window, batch on dim 0
    gates: Optional[torch.Tensor]  # (B, G, H) gate activations at the window's last step
    data: torch.Tensor  # the sequences s0.. the windows come from, on the model's device
    s0: int


class _WindowWalker:
    """Runs the model over the probe's windows in batches.

    The probe is cut into groups of whole sequences (``batch_size // P``
    at a time, a loader's batches further cut); under ``torch.distributed``
    each rank takes every ``world``-th group, so no sequence is run twice.
    Which windows end at which step is worked out on the CPU from the
    probe's index tensors, so the device never waits on the host.
    """

    def __init__(self, model, inputs, probe, signal, context, batch_size, device, shard):
        self.model, self.inputs, self.probe, self.signal, self.context = model, inputs, probe, signal, context
        self.batch_size, self.device, self.shard = batch_size, device, shard
        self.window = probe.window
        self.gates = bool(getattr(model, "gate_names", ()))

    def windows(self, batch):
        """The batch's windows as averaged: ``(B, L * D)`` inputs or ``(B, L)`` tokens."""
        w = self.inputs.windows(batch.data, batch.sequence - batch.s0, batch.position)
        return w if self.inputs.tokens else w.reshape(w.shape[0], -1)

    def batches(self, with_state):
        run = self._window_batches if self.context == "window" else self._prefix_batch
        for data, s0, seq, pos in self._groups():
            yield from run(data, s0, seq, pos, with_state)

    def _groups(self):
        """``(data, s0, sequence, position)`` of this rank's groups: the group's
        sequences from ``s0`` on the device and its windows (CPU), by sequence.
        A group holds about ``batch_size`` windows: whole sequences, as many as
        that takes (a sampled probe's sequences hold few windows each)."""
        rank, world = self.shard
        for index, (data, s0, count, seq, pos) in enumerate(self._all_groups()):
            if index % world == rank:
                yield data[:count], s0, seq, pos

    def _all_groups(self):
        """Every group, each ``(data from its first sequence, s0, sequence count, sequence, position)``."""
        positions, probe = self.probe.positions, self.probe
        if probe.window_sequence is None:  # a loader's batches, every window of each
            per_group = max(1, self.batch_size // positions)
            for data, s0 in self._blocks():
                for g0 in range(0, data.shape[0], per_group):
                    count = min(per_group, data.shape[0] - g0)
                    seq = torch.arange(s0 + g0, s0 + g0 + count).repeat_interleave(positions)
                    yield data[g0:], s0 + g0, count, seq, torch.arange(positions).repeat(count)
            return
        # Group of each sequence: how many batches of windows come before it.
        windows_before = torch.bincount(probe.window_sequence, minlength=probe.num_sequences).cumsum(0)
        group = torch.cat([torch.zeros(1, dtype=torch.int64), windows_before[:-1]]) // self.batch_size
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), (group.diff() != 0).nonzero().squeeze(1) + 1])
        bounds = torch.searchsorted(probe.window_sequence, starts).tolist() + [probe.num_windows]
        stops = starts.tolist()[1:] + [probe.num_sequences]
        for g0, g1, a, b in zip(starts.tolist(), stops, bounds, bounds[1:]):
            if a < b:
                yield self.inputs.data[g0:], g0, g1 - g0, probe.window_sequence[a:b], probe.window_position[a:b]

    def _blocks(self):
        """``(data on the device, index of its first sequence)`` of each of a loader's batches."""
        s0 = 0
        for x in self.probe.stream():
            yield x.to(self.device, None if self.inputs.tokens else self.inputs.dtype), s0
            s0 += x.shape[0]

    def _step(self, x, state):
        """One step: ``(state, signal values, gates or None)``."""
        if self.gates:
            return self.model.step(self.inputs.at(x), state, self.signal, gates=True)
        return (*self.model.step(self.inputs.at(x), state, self.signal), None)

    def _window_batches(self, data, s0, seq, pos, with_state):
        """Each window from a zero state at its start, ``batch_size`` windows at a time."""
        for a in range(0, seq.numel(), self.batch_size):
            sequence = seq[a : a + self.batch_size].to(self.device)
            position = pos[a : a + self.batch_size].to(self.device)
            xs = self.inputs.windows(data, sequence - s0, position)  # (B, L, ...)
            state = self.model.initial_state(sequence.numel())
            for i in range(self.window):
                state, values, gates = self._step(xs[:, i], state)
            yield _Batch(sequence, position, values, state if with_state else None, gates, data, s0)

    def _prefix_batch(self, data, s0, seq, pos, with_state):
        """One pass over a group's sequences; each window's results are picked at its end step.

        Windows are ordered by end position, so the ones ending at step ``t``
        are a contiguous run of rows.
        """
        order = torch.argsort(pos, stable=True)
        seq, pos = seq[order], pos[order]
        ends_per_step = torch.bincount(pos, minlength=self.probe.positions).tolist()
        rows = (seq - s0).to(self.device)
        count = int(seq.max()) - s0 + 1
        state = self.model.initial_state(count)
        signals, states, gates, row = [], [], [], 0
        for t in range(1, self.window + int(pos[-1]) + 1):
            state, values, step_gates = self._step(data[:count, t - 1], state)
            ending = ends_per_step[t - self.window] if t >= self.window else 0
            if ending:
                picked = rows[row : row + ending]
                row += ending
                signals.append(values[picked])
                if step_gates is not None:
                    gates.append(step_gates[picked])
                if with_state:
                    states.append([s[picked] for s in state])
        yield _Batch(
            seq.to(self.device),
            pos.to(self.device),
            torch.cat(signals),
            tuple(torch.cat(parts) for parts in zip(*states)) if with_state else None,
            torch.cat(gates) if gates else None,
            data,
            s0,
        )


def _roll_out(model, readout, state, steps, inputs, signal, feedback):
    """``(B, R * D)`` predictions after each window (token probes: the
    readout's softmax), each fed back as ``feedback`` says."""
    predictions = []
    generator = None
    for r in range(steps):
        top = model.readout_input(state)
        try:
            y = readout(top)
        except RuntimeError as e:  # e.g. a readout on another device or dtype than the model
            raise ValueError(
                f"readout: failed on a {tuple(top.shape)} {top.dtype} tensor on {top.device} "
                f"(the model's top-layer state): {e}"
            ) from e
        if not isinstance(y, torch.Tensor) or y.shape != (top.shape[0], inputs.size) or not y.is_floating_point():
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            what = f"(B, V)=({top.shape[0]}, {inputs.size}) scores" if inputs.tokens else \
                f"(B, D)=({top.shape[0]}, {inputs.size})"
            raise ValueError(f"readout: expected a floating tensor of shape {what}, got {got}")
        if y.device != top.device:
            raise ValueError(f"readout: returned a tensor on {y.device}, expected the model's device {top.device}")
        y = y.to(top.dtype)
        predictions.append(torch.softmax(y.float(), 1).to(y.dtype) if inputs.tokens else y)
        if r + 1 == steps:
            break
        if feedback == "as_is":
            fed = y
        else:
            if feedback == "argmax":
                token = y.argmax(1)
            else:
                if generator is None:
                    generator = torch.Generator(y.device).manual_seed(inputs.seed)
                token = torch.multinomial(torch.softmax(y.float(), 1), 1, generator=generator).squeeze(1)
            fed = inputs.token_inputs(token)
        state, _ = model.step(fed, state, signal)
    return torch.stack(predictions, 1).reshape(top.shape[0], -1)


@dataclasses.dataclass
class _Threshold:
    """Turns signals into weights: ``max(sign * (signal - value), 0)``, except
    that units whose ``value`` is their extreme (``tied``) weigh the windows
    at it 1. ``sign`` is -1 for ``"bottom"``, which weighs the negative tail."""

    value: object  # float or (H,) tensor
    tied: Optional[torch.Tensor] = None  # (H,) bool
    sign: float = 1.0

    @classmethod
    def from_largest(cls, largest, count, fraction, sign):
        """The threshold keeping ``fraction`` of ``count`` windows, from each
        unit's ``k = count - floor((1 - fraction) (count - 1))`` largest values
        of ``sign * signal``, ``(H, k)`` descending: the ``1 - fraction``
        quantile interpolated as ``torch.quantile`` does, of ``sign * signal``."""
        rank = (1.0 - fraction) * (count - 1)
        v_lo = largest[:, count - int(rank) - 1]
        v_hi = largest[:, count - int(rank) - 2] if count - int(rank) >= 2 else v_lo
        value = torch.lerp(v_lo, v_hi, rank - int(rank))
        return cls(sign * value, value >= largest[:, 0], sign)

    def weights(self, signal):
        d = self.sign * (signal - self.value)
        w = d.clamp_min(0)
        if self.tied is not None:
            w = torch.where(self.tied, (d >= 0).to(w.dtype), w)
        return w


class _Largest:
    """Each unit's ``k`` largest values of ``sign * signal`` so far, ``(H, k)``
    descending, and (``keyed``) the windows they came from: the exemplars, and
    the candidates for the ``"top"``/``"bottom"`` thresholds (``k x H``
    memory, not the probe's). Kept unit-major: one unsorted ``topk`` along
    rows, then a sort of the ``k`` kept, is about twice as fast as down columns."""

    def __init__(self, k, units, sign, device, dtype, keyed):
        self.k, self.sign = k, sign
        self.values = torch.empty(units, 0, dtype=dtype, device=device)
        self.keys = torch.empty(units, 0, dtype=torch.int64, device=device) if keyed else None

    def add(self, signal, keys=None):
        """Adds ``(B, H)`` signals of windows ``keys`` ``(B,)`` (when keyed)."""
        values = signal.T if self.sign > 0 else -signal.T
        self._merge(values, None if self.keys is None else keys[None, :].expand(values.shape))

    def gather(self):
        """Merges every rank's values (and keys): each rank then holds the ``k`` largest of all."""
        # Every rank sends k columns (all_gather needs equal shapes): short ones padded with -inf,
        # which never make the top k of all (k is at most the probe's windows).
        missing = self.k - self.values.shape[1]
        pad = lambda t, value: torch.cat([t, t.new_full((t.shape[0], missing), value)], 1)
        parts = [pad(self.values, -torch.inf)] + ([] if self.keys is None else [pad(self.keys, 0)])
        merged = []
        for part in parts:
            copies = [torch.empty_like(part) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(copies, part.contiguous())
            merged.append(torch.cat(copies, 1))
        self.values = self.values[:, :0]
        if self.keys is not None:
            self.keys = self.keys[:, :0]
        self._merge(merged[0], merged[1] if self.keys is not None else None)

    def _merge(self, values, keys):
        """Keeps the ``k`` largest of the kept and ``values`` ``(H, n)`` (with their ``keys``)."""
        if self.values.shape[1]:
            values = torch.cat([self.values, values], 1)
            keys = None if keys is None else torch.cat([self.keys, keys], 1)
        kept, index = values.topk(min(self.k, values.shape[1]), dim=1, sorted=False)
        self.values, order = kept.sort(dim=1, descending=True)
        if keys is not None:
            self.keys = keys.gather(1, index.gather(1, order))

    def exemplars(self, positions, window):
        """``(sequence, end, signal)``, each ``(H, k)`` on the CPU."""
        keys = self.keys.to("cpu")
        return keys // positions, keys % positions + window, (self.sign * self.values).to("cpu", torch.float64)


class _Sums:
    """Running sums over window batches on the model's device, turned into
    ``UnitFeatures`` at the end.

    Products are taken in at least float32 (half-precision models would
    overflow) and accumulated in float64. Window and rollout sums are kept
    transposed, ``(L * D, H)``, so that token windows add by index.
    """

    def __init__(self, probe, weightings, model, rollout, exemplars, top_fraction, walker, device, dtype):
        units = model.hidden_size
        self.weightings, self.rollout, self.tokens = weightings, rollout, probe.tokens is not None
        self.dtype = torch.promote_types(dtype, torch.float32)
        self.thresholds = {"relu": _Threshold(0.0)}
        self.count = 0
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        zeros = lambda *shape: torch.zeros(*shape, dtype=_accumulator_dtype(device), device=device)
        self.window_sum = zeros(probe.window * probe.input_size)
        self.rollout_sum = zeros(rollout * probe.input_size)
        self.rollout_count = 0  # windows in rollout_sum
        self.signal_sum = zeros(units)
        self.signal_sq = zeros(units)
        self.signal_max = torch.full((units,), -torch.inf, dtype=self.window_sum.dtype, device=device)
        self.by_weighting = {
            name: {
                "average": zeros(probe.window * probe.input_size, units),
                "rollout": zeros(rollout * probe.input_size, units),
                "weight": zeros(units),
                "weight_sq": zeros(units),
                "active": zeros(units),
                "position": zeros(probe.positions, units),
                "class": zeros(probe.num_classes, units),
            }
            for name in weightings
        }
        # Exemplars: the highest signals serve "top" and "relu", the lowest "bottom".
        signs = {_sign(name) for name in weightings}
        self.exemplars = {
            sign: _Largest(min(exemplars, probe.num_windows), units, sign, device, self.dtype, keyed=True)
            for sign in signs
        }
        self.num_windows = probe.num_windows
        kept = lambda fraction: self.num_windows - int((1.0 - fraction) * (self.num_windows - 1))
        self.largest = {sign: _Largest(kept(top_fraction), units, sign, device, self.dtype, keyed=False) for sign in signs}
        self.labels = walker.inputs.labels  # (N,) on the model's device, or None
        self.annotations = walker.inputs.annotations  # (N, T, A) or None
        self.annotation_names = list(probe.annotations)
        count = len(self.annotation_names)
        self.annotation_sum, self.annotation_sq, self.cross = zeros(count), zeros(count), zeros(units, count)
        self.gate_names = tuple(getattr(model, "gate_names", ())) if walker.gates else ()
        self.keep_gate = getattr(model, "keep_gate", None)
        self.gate_saturated, self.gate_sum = zeros(len(self.gate_names), units), zeros(len(self.gate_names), units)
        # The activation sample, gathered as its windows pass: each sample
        # window's key (sequence * P + position) ascending, and one row per
        # sample window plus a last row that takes every other window.
        self.positions, self.window = probe.positions, probe.window
        self.token_offsets = torch.arange(probe.window, device=device) * probe.input_size
        self.sample_keys = probe.sample_keys.to(device)
        self.sample = torch.zeros(probe.sample.numel() + 1, units, dtype=torch.float32, device=device)
        self.class_counts = probe.window_class_counts()
        self.distributed = walker.shard[1] > 1

    def candidates(self, signal):
        """Adds first-pass signals ``(B, H)`` to the threshold candidates."""
        signal = signal.to(self.dtype)
        for largest in self.largest.values():
            largest.add(signal)

    def threshold(self, weighting, fraction):
        """The ``_Threshold`` of ``"top"`` or ``"bottom"``, once every window's candidates are in."""
        sign = _sign(weighting)
        largest = self.largest[sign]
        if self.distributed:
            largest.gather()
        if not torch.isfinite(largest.values).all():
            raise _not_finite("rnn")
        return _Threshold.from_largest(largest.values, self.num_windows, fraction, sign)

    def weighed_rows(self, batch):
        """Which of a batch's windows some unit weighs, the only ones to roll out
        and sum: all (``None``) with ``"relu"``; otherwise only those a unit
        weighs, plus the activation sample's (for the mean rollout), as an index tensor."""
        if "relu" in self.weightings:
            return None
        signal = batch.signal.to(self.dtype)
        weighed = self._in_sample(batch) < self.sample_keys.numel()
        for name in self.weightings:
            weighed |= (self.thresholds[name].weights(signal) > 0).any(1)
        return weighed.nonzero().squeeze(1)

    def _in_sample(self, batch):
        """Each window's row in the activation sample; the sample's size for windows outside it."""
        keys = batch.sequence * self.positions + batch.position
        found = torch.searchsorted(self.sample_keys, keys).clamp_max(len(self.sample_keys) - 1)
        return torch.where(self.sample_keys[found] == keys, found, len(self.sample_keys))  # no device sync

    def add(self, batch, windows, predictions, rows=None):
        """Adds a batch; ``rows`` (``None``: all) are the windows some unit weighs
        (``weighed_rows``) and ``predictions`` their rollouts."""
        signal = batch.signal.to(self.dtype)
        self.count += signal.shape[0]
        self.finite &= torch.isfinite(signal).all()
        if self.tokens:  # (B, L) tokens: row l * V + token of each window position
            windows = windows + self.token_offsets
            self.window_sum += torch.bincount(windows.flatten(), minlength=self.window_sum.numel())
        else:
            windows = windows.to(self.dtype)
            self.window_sum += windows.sum(0)
        self.signal_sum += signal.sum(0)
        self.signal_sq += (signal.to(self.signal_sq.dtype) ** 2).sum(0)
        self.signal_max = torch.maximum(self.signal_max, signal.amax(0))
        sample_rows = self._in_sample(batch)
        self.sample.index_copy_(0, sample_rows, signal.to(torch.float32))
        keys = batch.sequence * self.positions + batch.position
        for exemplars in self.exemplars.values():
            exemplars.add(signal, keys)
        if self.annotations is not None:
            a = self.annotations[batch.sequence, batch.position + self.window - 1].to(self.dtype)  # (B, A)
            wide = a.to(self.cross.dtype)
            self.annotation_sum += wide.sum(0)
            self.annotation_sq += (wide * wide).sum(0)
            self.cross += (signal.T @ a).to(self.cross.dtype)
        if self.gate_names:
            gates = batch.gates.to(self.dtype)
            low, high = SATURATION
            self.gate_saturated += ((gates < low) | (gates > high)).sum(0)
            self.gate_sum += gates.sum(0)
        if predictions is not None:
            predictions = predictions.to(self.dtype)
            if rows is None:
                self.rollout_sum += predictions.sum(0)
                self.rollout_count += predictions.shape[0]
            else:  # only the sample's rollouts are a fair mean
                in_sample = sample_rows[rows] < self.sample_keys.numel()
                self.rollout_sum += (predictions * in_sample[:, None]).sum(0)
                self.rollout_count += in_sample.sum()
        classes = None if self.labels is None else self.labels[batch.sequence]
        position = batch.position
        if rows is not None:  # the other windows weigh 0 for every unit
            signal, windows, position = signal[rows], windows[rows], position[rows]
            classes = None if classes is None else classes[rows]
        for name in self.weightings:
            sums = self.by_weighting[name]
            w = self.thresholds[name].weights(signal)
            if self.tokens:
                for column in windows.T:  # one index_add per window position, not a one-hot product
                    sums["average"].index_add_(0, column, w.to(sums["average"].dtype))
            else:
                sums["average"] += windows.T @ w
            if predictions is not None:
                sums["rollout"] += predictions.T @ w
            # Weights and their squares in the accumulator's precision: in float32, w * w
            # underflows (w < 1e-19) or overflows (w > 1e19) and the ESS leaves [0, 1].
            wide = w.to(sums["weight"].dtype)
            sums["weight"] += wide.sum(0)
            sums["weight_sq"] += (wide * wide).sum(0)
            sums["active"] += (w > 0).sum(0)
            sums["position"] += _sum_by(w, position, sums["position"].shape[0])
            if classes is not None:
                sums["class"] += _sum_by(w, classes, sums["class"].shape[0])

    def _all_reduce(self):
        """Sums every rank's sums (max, min, merged exemplars where a sum is not the answer)."""
        dist = torch.distributed
        totals = [self.window_sum, self.rollout_sum, self.signal_sum, self.signal_sq, self.annotation_sum,
                  self.annotation_sq, self.cross, self.gate_saturated, self.gate_sum,
                  *(t for sums in self.by_weighting.values() for t in sums.values())]
        counts = torch.tensor([self.count, float(self.rollout_count), float(not self.finite)],
                              dtype=self.window_sum.dtype, device=self.window_sum.device)
        for t in (*totals, counts):
            dist.all_reduce(t)
        self.count, self.rollout_count, self.finite = int(counts[0]), float(counts[1]), counts[2] == 0
        dist.all_reduce(self.signal_max, op=dist.ReduceOp.MAX)
        sample = self.sample[:-1].contiguous()  # each sample window is on one rank, zeros elsewhere
        dist.all_reduce(sample)
        self.sample[:-1] = sample
        for exemplars in self.exemplars.values():
            exemplars.gather()

    def result(self, probe, signal, model, context, top_fraction):
        if self.distributed:
            self._all_reduce()
        if not self.finite:
            raise _not_finite("rnn")
        self._check_overflow(probe)
        sample = self.sample[:-1].T.to("cpu").contiguous()
        _check_finite("rnn", sample)  # a float64 signal can overflow the sample's float32
        cpu = lambda t: t.to("cpu", torch.float64)
        n = self.count
        exemplars = {sign: e.exemplars(self.positions, self.window) for sign, e in self.exemplars.items()}
        weighted = {}
        for name, device_sums in self.by_weighting.items():
            sums = {key: cpu(value) for key, value in device_sums.items()}
            total = sums["weight"]
            dead = total <= 0
            safe = torch.where(dead, torch.ones_like(total), total)
            per_unit = lambda t: torch.where(dead[:, None], torch.zeros_like(t), t / safe[:, None])
            ess = torch.where(dead, torch.zeros_like(total), total**2 / (sums["weight_sq"].clamp_min(1e-300) * n))
            ess = ess.clamp_max(1.0)  # <= 1 (Cauchy-Schwarz); more only if w * w underflowed float64
            sequence, end, exemplar_signal = exemplars[self.thresholds[name].sign]
            weighted[name] = WeightedFeatures(
                average=per_unit(sums["average"].T).reshape(-1, probe.window, probe.input_size),
                rollout=per_unit(sums["rollout"].T).reshape(-1, self.rollout, probe.input_size) if self.rollout else None,
                active_fraction=sums["active"] / n,
                effective_sample_size=ess,
                position_share=per_unit(sums["position"].T),
                class_weight=None
                if self.class_counts is None
                else sums["class"].T / self.class_counts.clamp_min(1)[None, :],
                dead=dead,
                exemplar_sequence=sequence,
                exemplar_end=end,
                exemplar_signal=exemplar_signal,
            )
            _check_finite("readout", weighted[name].rollout)
        _check_finite("readout", self.rollout_sum)
        gate_saturation = time_constant = None
        if self.gate_names:
            saturated, mean_gate = cpu(self.gate_saturated) / n, cpu(self.gate_sum) / n
            gate_saturation = dict(zip(self.gate_names, saturated))
            keep = mean_gate[self.gate_names.index(self.keep_gate)]
            time_constant = torch.where(keep >= 1, torch.inf, -1 / torch.log(keep))
        return UnitFeatures(
            weighted=weighted,
            signal_mean=cpu(self.signal_sum) / n,
            signal_max=cpu(self.signal_max),
            activation_sample=sample,
            mean_window=(cpu(self.window_sum) / n).reshape(probe.window, probe.input_size),
            mean_rollout=(cpu(self.rollout_sum) / float(self.rollout_count)).reshape(self.rollout, probe.input_size)
            if self.rollout else None,
            class_counts=self.class_counts,
            class_names=probe.class_names,
            signal=signal,
            layer=getattr(model, "layer", -1),
            context=context,
            top_fraction=float(top_fraction),
            num_windows=n,
            display=probe.display,
            probe_fingerprint=probe.fingerprint,
            probe_data=probe.data,
            vocab=probe.vocab,
            channel_names=probe.channel_names,
            annotation_correlation=self._correlations(),
            gate_saturation=gate_saturation,
            time_constant=time_constant,
        )

    def _correlations(self):
        """``{name: (H,)}`` Pearson correlation of each unit's signal with each annotation (0 if undefined)."""
        if not self.annotation_names:
            return {}
        n = self.count
        cpu = lambda t: t.to("cpu", torch.float64)
        s, s2, a, a2, sa = (cpu(t) for t in (self.signal_sum, self.signal_sq, self.annotation_sum,
                                              self.annotation_sq, self.cross))
        cov = sa / n - (s / n)[:, None] * (a / n)[None, :]
        var_s = (s2 / n - (s / n) ** 2).clamp_min(0)
        var_a = (a2 / n - (a / n) ** 2).clamp_min(0)
        scale = (var_s[:, None] * var_a[None, :]).sqrt()
        # Below ~1e-12 relative, a "variance" is rounding of a constant.
        defined = (var_s[:, None] > 1e-12 * (s2 / n)[:, None]) & (var_a[None, :] > 1e-12 * (a2 / n)[None, :])
        r = torch.where(defined, cov / torch.where(defined, scale, torch.ones_like(scale)), torch.zeros_like(cov))
        r = r.clamp(-1.0, 1.0)
        return {name: r[:, i].contiguous() for i, name in enumerate(self.annotation_names)}

    def _check_overflow(self, probe):
        """Finite signals can still overflow the sums of products taken in ``self.dtype``
        (e.g. inputs of 1e30 weighted by signals of 1e10 in float32): name the culprit
        rather than return NaN. Rollout sums are the readout's (checked after)."""
        finite = lambda *ts: all(bool(torch.isfinite(t).all()) for t in ts)
        keys = ("weight", "weight_sq", "active", "position", "class")
        if not finite(self.signal_sum, *(s[k] for s in self.by_weighting.values() for k in keys)):
            raise ValueError(
                f"rnn: its signals overflow {self.dtype} when summed over the probe's windows "
                f"(largest {float(self.signal_max.max()):.3g}); has the model diverged?"
            )
        if not finite(self.window_sum, *(s["average"] for s in self.by_weighting.values())):
            largest = float("nan") if probe.data is None else float(probe.data.abs().max())
            raise ValueError(
                f"probe: its inputs (up to |x| = {largest:.3g}) weighted by the units' signals overflow "
                f"{self.dtype}; rescale the sequences (or measure a float64 model)"
            )


def _sign(weighting):
    """-1 for ``"bottom"``, which weighs the low tail of the signals; else 1."""
    return -1.0 if weighting == "bottom" else 1.0


def _accumulator_dtype(device):
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def _sum_by(w, index, groups):
    """``(groups, H)`` sums of the rows of ``w`` ``(B, H)`` grouped by ``index`` ``(B,)``."""
    return w.new_zeros(groups, w.shape[1]).index_add_(0, index, w)


def _check_finite(source, values):
    if values is not None and not torch.isfinite(values).all():
        raise _not_finite(source)


def _not_finite(source):
    return ValueError(f"{source}: produced NaN or Inf on the probe; the features would be meaningless")


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
    """No grad, no autocast, forked RNG, eval mode for every ``nn.Module``
    among ``objects``; modes restored after."""
    modes = [(m, m.training) for o in objects if isinstance(o, nn.Module) for m in o.modules()]
    try:
        for m, _ in modes:
            m.training = False
        with torch.no_grad(), torch.autocast(device.type, enabled=False), torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else []
        ):
            yield
    finally:
        for m, mode in modes:
            m.training = mode
