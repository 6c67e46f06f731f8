"""Running a model over a probe's windows in batches, and rolling it out after them.

The probe is cut into groups of whole sequences; each group runs once from
the zero state (``context="prefix"``) or each window from its own start
(``"window"``), and yields ``Batch``es: each window's signal (and gates,
and state, for rollouts) at its last step. Token probes feed the RNN
``embed(token)`` or one-hot tokens. Under ``torch.distributed`` each rank
takes every ``world``-th group.
"""

import dataclasses
from typing import Optional

import torch
from torch import nn


def process_shard():
    """``(rank, world size)`` of the default ``torch.distributed`` process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Inputs:
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
        ``(B, L, D)`` inputs or ``(B, L)`` tokens. ``data`` is contiguous
        (``Probe.on``, ``WindowWalker._blocks``); else every call copies it."""
        # One gather of whole rows of the flattened data: 3 times as fast as indexing (sequence, step).
        rows = (sequence * data.shape[1] + position)[:, None] + torch.arange(self.window, device=position.device)
        return data.flatten(0, 1).index_select(0, rows.flatten()).view(*rows.shape, *data.shape[2:])


@dataclasses.dataclass
class Batch:
    sequence: torch.Tensor  # (B,) window's sequence index in the probe, on the model's device
    position: torch.Tensor  # (B,) window's end position minus L, likewise
    signal: torch.Tensor  # (B, H) at the window's last step
    state: Optional[tuple]  # state after the window, batch on dim 0
    gates: Optional[torch.Tensor]  # (B, G, H) gate activations at the window's last step
    data: torch.Tensor  # the sequences s0.. the windows come from, on the model's device
    s0: int
    draws: Optional[torch.Tensor] = None  # (B, R - 1) uniforms for sampled feedback (``feedback_draws``)

    def slices(self, rows):
        """The batch as consecutive batches of at most ``rows()`` windows each (asked anew for each)."""
        a = 0
        while a < self.sequence.shape[0]:
            b = a + rows()
            part = lambda t: None if t is None else t[a:b]
            yield Batch(part(self.sequence), part(self.position), part(self.signal),
                        None if self.state is None else tuple(part(s) for s in self.state),
                        part(self.gates), self.data, self.s0, part(self.draws))
            a = b


def feedback_draws(batch, steps, seed, positions):
    """``(B, steps - 1)`` uniforms in [0, 1) that sample the fed-back tokens of
    the batch's rollouts: seeded by the probe's ``seed`` and the batch's first
    window, so the same windows draw the same whatever the slices, ranks or
    other batches."""
    first = int(batch.sequence[0]) * positions + int(batch.position[0])
    generator = torch.Generator(batch.signal.device).manual_seed((seed * 1_000_003 + first) % 2**63)
    return torch.rand(batch.signal.shape[0], steps - 1, generator=generator, device=batch.signal.device)


class WindowWalker:
    """Runs the model over the probe's windows in batches.

    The probe is cut into groups of whole sequences holding about
    ``batch_size`` windows (a loader's batches further cut); under
    ``torch.distributed`` each rank takes every ``world``-th group, so no
    sequence is run twice.
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
        for index, group in enumerate(self._all_groups()):
            if index % world == rank:
                yield group

    def _all_groups(self):
        """Every group, each ``(data, s0, sequence, position)``."""
        positions, probe = self.probe.positions, self.probe
        if probe.window_sequence is None:  # a loader's batches, every window of each
            per_group = max(1, self.batch_size // positions)
            for data, s0 in self._blocks():
                for g0 in range(0, data.shape[0], per_group):
                    count = min(per_group, data.shape[0] - g0)
                    seq = torch.arange(s0 + g0, s0 + g0 + count).repeat_interleave(positions)
                    yield data[g0 : g0 + count], s0 + g0, seq, torch.arange(positions).repeat(count)
            return
        # Group of each sequence: how many batches of windows come before it.
        windows_before = torch.bincount(probe.window_sequence, minlength=probe.num_sequences).cumsum(0)
        group = torch.cat([torch.zeros(1, dtype=torch.int64), windows_before[:-1]]) // self.batch_size
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), (group.diff() != 0).nonzero().squeeze(1) + 1])
        bounds = torch.searchsorted(probe.window_sequence, starts).tolist() + [probe.num_windows]
        stops = starts.tolist()[1:] + [probe.num_sequences]
        for g0, g1, a, b in zip(starts.tolist(), stops, bounds, bounds[1:]):
            if a < b:
                yield self.inputs.data[g0:g1], g0, probe.window_sequence[a:b], probe.window_position[a:b]

    def _blocks(self):
        """``(data on the device, index of its first sequence)`` of each of a loader's batches."""
        s0 = 0
        for x in self.probe.stream():
            yield x.to(self.device, None if self.inputs.tokens else self.inputs.dtype).contiguous(), s0
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
            yield Batch(sequence, position, values, state if with_state else None, gates, data, s0)

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
        out, row = None, 0  # [signal, gates or None, *state] of every window, filled step by step
        for t in range(1, self.window + int(pos[-1]) + 1):
            state, values, step_gates = self._step(data[:count, t - 1], state)
            ending = ends_per_step[t - self.window] if t >= self.window else 0
            if ending:
                picked = rows[row : row + ending]
                step = [values, step_gates, *(state if with_state else ())]
                if out is None:
                    out = [None if v is None else v.new_empty((len(rows), *v.shape[1:])) for v in step]
                for v, o in zip(step, out):
                    if v is not None:  # picked straight into place: no per-step copies to concatenate
                        torch.index_select(v, 0, picked, out=o[row : row + ending])
                row += ending
        signal, gates, *states = out
        yield Batch(seq.to(self.device), pos.to(self.device), signal, tuple(states) if with_state else None,
                    gates, data, s0)


class InputKeepingReadout:
    """``readout``, kept from changing its input: the first call gets a
    copy, and if the readout changed it in place (``nn.ReLU(inplace=True)``
    first, say), so does every later call. Its input is the state that the
    rollout feeds back, which a window's signal may share: the module's own
    readout reads the RNN's outputs, not the state it carries on."""

    def __init__(self, readout):
        self.readout, self.copies = readout, None  # None: not known yet

    def __call__(self, h):
        if self.copies is None:
            h = h.clone()
            try:
                version = h._version
            except RuntimeError:  # an inference tensor (torch.inference_mode) counts no versions
                self.copies = True
                return self.readout(h)
            y = self.readout(h)
            self.copies = h._version != version
            return y
        return self.readout(h.clone() if self.copies else h)


def roll_out(model, readout, state, steps, inputs, signal, feedback, draws=None):
    """``(B, R * D)`` predictions after each window (token probes: the
    readout's softmax), each fed back as ``feedback`` says (``"sample"``:
    the token whose cumulative probability first reaches ``draws[:, r]``)."""
    predictions = []
    step = getattr(model, "rollout_step", model.step)
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
        probabilities = torch.softmax(y.float(), 1) if inputs.tokens or feedback == "sample" else None
        predictions.append(probabilities.to(y.dtype) if inputs.tokens else y)
        if r + 1 == steps:
            break
        if feedback == "as_is":
            fed = y
        else:
            if feedback == "argmax":
                token = y.argmax(1)
            else:
                cumulative = probabilities.cumsum(1)
                token = torch.searchsorted(cumulative, draws[:, r].contiguous()[:, None]).squeeze(1)
                token = token.clamp_max(cumulative.shape[1] - 1)  # a draw above a sum rounded below 1
            fed = inputs.token_inputs(token)
        state, _ = step(fed, state, signal)
    return torch.stack(predictions, 1).reshape(top.shape[0], -1)
