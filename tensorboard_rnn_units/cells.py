"""How to run each supported recurrent model one step at a time.

``compute_unit_features`` talks to models only through the ``StepModel``
protocol below. PyTorch's ``nn.RNN``, ``nn.GRU``, ``nn.LSTM`` (any
``num_layers``, either ``batch_first``), their cell classes and subclasses of
any of these (e.g. modules parametrized by ``weight_norm``) are adapted by
``TorchRecurrent``; any other model can implement the protocol itself.
"""

import functools
from typing import Protocol, Sequence, Tuple, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from tensorboard_rnn_units.validation import check_int

State = Tuple[torch.Tensor, ...]

# Module class -> (kind, is a cell); subclasses use their most specific base
# here. Order matters for the error message only.
SUPPORTED = {
    nn.RNN: ("rnn", False),
    nn.GRU: ("gru", False),
    nn.LSTM: ("lstm", False),
    nn.RNNCell: ("rnn", True),
    nn.GRUCell: ("gru", True),
    nn.LSTMCell: ("lstm", True),
}

# Signals each kind offers; the first is the default.
SIGNALS = {
    "rnn": ("preactivation", "hidden"),
    "gru": ("hidden",),
    "lstm": ("hidden", "cell"),
}

# Gates each kind has (``step(..., gates=True)`` returns them in this order),
# and the one whose mean activation gives a unit's memory time constant:
# the fraction of the state each step keeps (LSTM forget, GRU update gate).
GATES = {"rnn": (), "gru": ("reset", "update"), "lstm": ("input", "forget", "output")}
KEEP_GATE = {"gru": "update", "lstm": "forget"}


@runtime_checkable
class StepModel(Protocol):
    """What a recurrent model must offer to be probed.

    Attributes:
      input_size: ``D``, the size of one input.
      hidden_size: ``H``, the number of units shown.
      signals: names of the per-unit signals ``step`` can return; the first
        is the default (e.g. ``("preactivation", "hidden")``).

    Every state is a tuple of tensors with the batch on dim 0, on the model's
    device and dtype, so windows can be selected with ``s[index]``.
    """

    input_size: int
    hidden_size: int
    signals: Sequence[str]

    def initial_state(self, batch_size: int) -> State:
        """The zero state for ``batch_size`` sequences."""

    def step(self, x: torch.Tensor, state: State, signal: str) -> Tuple[State, torch.Tensor]:
        """Consumes inputs ``x`` ``(B, D)``; returns the new state and the
        ``(B, H)`` values of ``signal`` at this step."""

    def readout_input(self, state: State) -> torch.Tensor:
        """The ``(B, H_top)`` top-layer hidden state that a readout maps to an input."""


# Optional: a StepModel with a non-empty ``gate_names`` also takes
# ``step(x, state, signal, gates=True)`` and then returns ``(state, values,
# gates)``, ``gates`` ``(B, G, H)`` in ``gate_names`` order, for the gate
# statistics; ``keep_gate`` names the gate whose mean gives the time constant.
# Optional too: ``rollout_step(x, state, signal)``, used instead of ``step``
# after the windows, where no signal is compared (``TorchRecurrent``'s uses
# ``fast_tanh``), and ``state_from_signal(signal)``: None, or a function
# mapping that signal's ``(B, H)`` values at a step to the state after it.


# StepModel's members, to name the ones a partial implementation lacks.
STEP_MODEL_ATTRIBUTES = ("input_size", "hidden_size", "signals")
STEP_MODEL_METHODS = ("initial_state", "step", "readout_input")


class TorchRecurrent:
    """``StepModel`` for PyTorch's RNN, GRU and LSTM modules and cells.

    Re-implements their step equations from the module's own parameters
    (dropout between layers is not applied: features are measured in eval
    mode), so the pre-activation of a plain RNN can be read, and any layer
    of a stack can be the one shown. A subclass is run as its supported base
    (its own ``forward``, if any, is not used).
    """

    def __init__(self, module, layer=-1):
        self.module = module
        self.kind, is_cell = SUPPORTED[_supported_base(type(module))]
        if not is_cell and module.bidirectional:
            raise ValueError(
                "rnn: bidirectional layers are not supported (a unit's state "
                "depends on inputs after the window); use a unidirectional module"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError("rnn: LSTM with proj_size > 0 is not supported")
        self.num_layers = 1 if is_cell else module.num_layers
        layer = check_int(
            "layer", layer, -self.num_layers, self.num_layers - 1,
            hint=f" for a {self.num_layers}-layer {type(module).__name__}",
        )
        self.layer = layer % self.num_layers
        self.suffixes = [""] if is_cell else [f"_l{k}" for k in range(self.num_layers)]
        self.input_size = module.input_size
        self.hidden_size = module.hidden_size
        self.signals = SIGNALS[self.kind]
        self.gate_names = GATES[self.kind]
        self.keep_gate = KEEP_GATE.get(self.kind)
        self.relu = getattr(module, "nonlinearity", "tanh") == "relu"

    @functools.cached_property
    def weights(self):
        """Per layer ``(weight_ih, weight_hh, bias_ih, bias_hh)``, read once on
        the first ``step``: inside ``compute_unit_features``' no-grad, eval-mode
        context, so parametrized weights (computed on each attribute access)
        are computed once, without autograd, and ``spectral_norm`` does not
        power-iterate (which would change its buffers)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [tuple(getattr(self.module, f"{name}{s}", None) for name in names) for s in self.suffixes]

    @functools.cached_property
    def biases(self):
        """Per layer ``b_ih + b_hh`` (``None`` without biases), for RNN and LSTM steps; read with ``weights``."""
        return [None if b_ih is None else b_ih + b_hh for _, _, b_ih, b_hh in self.weights]

    def initial_state(self, batch_size):
        w = next(self.module.parameters())  # not self.weights, which must wait for the first step
        count = self.num_layers * (2 if self.kind == "lstm" else 1)
        return tuple(w.new_zeros(batch_size, self.hidden_size) for _ in range(count))

    def step(self, x, state, signal, gates=False):
        return self._step(x, state, signal, gates, torch.tanh)

    def rollout_step(self, x, state, signal):
        """``step`` for rollouts, with ``fast_tanh``. The windows' signals keep
        ``torch.tanh``, as the module computes them: ``"top"`` compares
        them exactly, and a saturated unit's ties at 1.0 must be the
        module's own."""
        return self._step(x, state, signal, False, fast_tanh)

    def _step(self, x, state, signal, gates, tanh):
        hs, cs = list(state[: self.num_layers]), list(state[self.num_layers :])
        inp, out, shown_gates = x, None, None
        for k, (w_ih, w_hh, b_ih, b_hh) in enumerate(self.weights):
            if self.kind != "gru":  # x W_ih' + (b_ih + b_hh) + h W_hh': the sum inside one matrix product
                pre = torch.addmm(F.linear(inp, w_ih, self.biases[k]), hs[k], w_hh.T)
            if self.kind == "rnn":
                hs[k] = torch.relu(pre) if self.relu else tanh(pre)
                values = pre if signal == "preactivation" else hs[k]
            elif self.kind == "gru":
                gi, gh = F.linear(inp, w_ih, b_ih), F.linear(hs[k], w_hh, b_hh)
                i_r, i_z, i_n = gi.chunk(3, 1)
                h_r, h_z, h_n = gh.chunk(3, 1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = tanh(i_n + r * h_n)
                hs[k] = n + z * (hs[k] - n)
                values, layer_gates = hs[k], (r, z)
            else:
                i, f, g, o = pre.chunk(4, 1)
                i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
                cs[k] = f * cs[k] + i * tanh(g)
                hs[k] = o * tanh(cs[k])
                values, layer_gates = (cs[k] if signal == "cell" else hs[k]), (i, f, o)
            if k == self.layer:
                out = values
                if gates:
                    shown_gates = torch.stack(layer_gates, 1)
            inp = hs[k]
        if gates:
            return tuple(hs + cs), out, shown_gates
        return tuple(hs + cs), out

    def readout_input(self, state):
        return state[self.num_layers - 1]

    def state_from_signal(self, signal):
        """A function of a step's ``signal`` values ``(B, H)`` giving the state
        after that step, as ``step`` computes it, when they determine it (one
        layer: RNN and GRU hidden states, or an RNN's pre-activation through
        its nonlinearity); else None. ``"top"`` then keeps only the signals of
        the windows it holds: half the memory, and no page faults for states."""
        if self.num_layers != 1 or self.kind == "lstm":
            return None
        if signal == "hidden":
            return lambda values: (values,)
        return lambda values: (torch.relu(values) if self.relu else torch.tanh(values),)


def fast_tanh(x):
    """``torch.tanh``, computed on a CPU as ``2 sigmoid(2x) - 1``: there
    ``torch.tanh`` is 4 to 6 times slower than this (measured with AVX-512
    and AVX2 kernels), and tanh is most of a step's elementwise work. The
    two agree within 2e-7 (absolute, float32; float64 closer). Other dtypes
    (and other devices) get ``torch.tanh``: in float16 this form loses
    inputs below 2.4e-4."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return torch.tanh(x)
    return torch.sigmoid(2 * x).mul_(2).sub_(1)


def as_step_model(rnn, layer=-1):
    """Wraps ``rnn`` as a ``StepModel``; a ``StepModel`` is used as it is.

    A complete ``StepModel`` wins over a supported base class, so a subclass
    of ``nn.GRU`` (say) can define its own steps.

    Raises:
      TypeError: ``rnn`` is neither a supported module nor a ``StepModel``,
        naming the members a partial ``StepModel`` lacks.
      ValueError: bidirectional, projected LSTM, or ``layer`` out of range.
    """
    missing = [name for name in STEP_MODEL_ATTRIBUTES if not hasattr(rnn, name)]
    missing += [name for name in STEP_MODEL_METHODS if not callable(getattr(rnn, name, None))]
    if not missing:
        if layer != -1:
            raise ValueError(
                "layer: a custom StepModel shows the units it chooses; leave layer at -1"
            )
        return rnn
    if _supported_base(type(rnn)) is not None:
        return TorchRecurrent(rnn, layer)
    if len(missing) < len(STEP_MODEL_ATTRIBUTES + STEP_MODEL_METHODS):
        raise TypeError(
            f"rnn: {type(rnn).__name__} implements only part of tensorboard_rnn_units.StepModel; "
            f"missing {', '.join(missing)}"
        )
    names = ", ".join(f"nn.{cls.__name__}" for cls in SUPPORTED)
    raise TypeError(
        f"rnn: unsupported type {type(rnn).__name__}; expected one of {names} (or a subclass), "
        "or an object implementing tensorboard_rnn_units.StepModel"
    )


def _supported_base(cls):
    """The first class of ``cls``'s MRO (its most specific base) in ``SUPPORTED``, or None."""
    return next((base for base in cls.__mro__ if base in SUPPORTED), None)
