"""Log saved checkpoints after the fact, as if ``add_rnn_units`` had run while training.

``backfill`` builds one model with your factory, loads each checkpoint into
it in step order and logs its units at that step, with a progress bar. A
checkpoint that cannot be loaded into the model is skipped and reported by
name with the reason (printed to stderr and in the returned report), never
silently; the others are still logged. ``python -m tensorboard_rnn_units
backfill`` is the same from the command line.

A checkpoint is a state dict (``model.state_dict()``), either already loaded
or a file that ``torch.load(path, map_location="cpu", weights_only=True)``
reads: the state dict itself, or a dict holding it under ``"state_dict"``,
``"model_state_dict"`` or ``"model"`` (next to, say, ``"optimizer"`` and
``"step"``). Whole pickled models are refused: ``weights_only`` never runs
code from a file.
"""

import dataclasses
import os
import re
import sys
from collections.abc import Mapping
from typing import NamedTuple, Optional, Tuple

import torch
import tqdm
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tensorboard_rnn_units.probe import Probe
from tensorboard_rnn_units.summary import add_rnn_units
from tensorboard_rnn_units.validation import check_int

# Keys under which a checkpoint file may hold the model's state dict, tried in this order.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
# Keys of such a file that may hold its training step, tried in this order.
STEP_KEYS = ("step", "global_step")
_ACCEPTED = "(a dict of tensors, or a dict holding one under " + ", ".join(repr(k) for k in STATE_DICT_KEYS) + ")"
RECURRENT_TYPES = (nn.RNNBase, nn.RNNCellBase)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is the reason."""


class Skipped(NamedTuple):
    """One skipped checkpoint. ``checkpoint`` names it: its path as given, or
    ``<state dict at step N>``; ``step`` is ``None`` when the step itself could not
    be found (the command line's rule)."""

    step: Optional[int]
    checkpoint: str
    reason: str

    def __str__(self):
        at = "" if self.step is None else f" (step {self.step})"
        return f"skipped checkpoint {self.checkpoint}{at}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class BackfillReport:
    """What ``backfill`` did: the steps it logged (increasing) and the checkpoints
    it skipped, with why."""

    logged: Tuple[int, ...]
    skipped: Tuple[Skipped, ...]


def backfill(
    logdir,
    tag,
    model_factory,
    checkpoints,
    probe,
    *,
    rnn=None,
    readout=None,
    rollout=0,
    progress=True,
    **options,
):
    """Logs the units of every saved checkpoint at its step, into the run ``logdir``.

    One model is built with ``model_factory()``; each checkpoint, in increasing
    step order, is loaded into it (``load_state_dict``, strict: every parameter
    and buffer is replaced) and logged with ``add_rnn_units(writer, tag,
    <rnn>, probe, global_step=step, readout=<readout>, rollout=rollout,
    **options)`` through ``SummaryWriter(logdir)``. Use the tag (and probe,
    layer, signal, context) the training run logs with, or a fresh run
    directory: each step is logged once, so backfilling a run twice logs its
    steps twice.

    A checkpoint that cannot be read, holds no state dict, does not fit the
    model (missing, unexpected or resized keys) or has NaN or Inf in the
    recurrent layer's parameters is skipped: a line naming it and the reason
    goes to stderr as it happens (printed, not warned, so that a repeated run
    in the same process says it again) and it is in the report. Any other
    error (e.g. a probe whose inputs do not fit the model) stops the backfill,
    noting the checkpoint it happened at.

    Args:
      logdir: the run directory, as for ``SummaryWriter(logdir)``.
      tag: the summary tag, e.g. ``"rnn/units"``.
      model_factory: a callable with no arguments returning a fresh
        ``nn.Module``, the architecture the checkpoints were saved from.
      checkpoints: an iterable of ``(step, source)``: ``step`` an integer
        >= 0, each step at most once; ``source`` a path to a checkpoint file
        or an already loaded state dict (see the module docstring for the
        files accepted). A file's own ``"step"`` key is not read here: the
        given step counts.
      probe: the ``Probe`` to measure every checkpoint on.
      rnn: which part of the model is the recurrent layer: a function
        ``model -> module`` or an attribute path such as ``"rnn"`` or
        ``"encoder.lstm"``. By default the model itself if it is an
        ``nn.RNN``/``GRU``/``LSTM`` (or a cell), else its only such submodule.
      readout: what maps the top layer's ``(B, H)`` state to a ``(B, D)``
        prediction, for ``rollout > 0``: a function ``model -> callable`` or an
        attribute path such as ``"head"`` (a module) or ``"readout"`` (a method).
      rollout: ``R``, predictions fed back after each window.
      progress: show a tqdm progress bar on stderr.
      **options: more keywords for ``add_rnn_units`` (``weighting``,
        ``layer``, ``signal``, ``context``, ``top_fraction``, ``batch_size``).

    Returns:
      a ``BackfillReport``.

    Raises:
      TypeError: ``model_factory`` not callable or not returning an
        ``nn.Module``, ``probe`` not a ``Probe``, ``rnn``/``readout`` given as
        a module instead of a way to find one in each checkpoint's model.
      ValueError: a bad argument, naming it: no checkpoints, a step repeated
        or not an integer >= 0, a malformed pair, an ``rnn``/``readout`` path
        the model lacks, no unique recurrent layer to default to, no
        ``readout`` with ``rollout > 0``.
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag: expected a non-empty string, got {tag!r}")
    if not callable(model_factory):
        raise TypeError(
            f"model_factory: expected a callable returning an nn.Module, got {type(model_factory).__name__}"
        )
    if not isinstance(probe, Probe):
        raise TypeError(f"probe: expected a tensorboard_rnn_units.Probe, got {type(probe).__name__}")
    rollout = check_int("rollout", rollout, 0)
    if rollout > 0 and readout is None:
        raise ValueError(
            "readout: required when rollout > 0 (--readout): an attribute path such as 'head', or model -> callable"
        )
    ordered = _ordered(checkpoints)
    model = model_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_factory: expected it to return an nn.Module, got {type(model).__name__}")
    rnn_module = find_rnn(model) if rnn is None else _part("rnn", rnn, model)
    readout_fn = None if readout is None else _part("readout", readout, model)

    logged, skipped = [], []
    with SummaryWriter(os.fspath(logdir)) as writer, tqdm.tqdm(
        ordered, desc=f"backfill {tag}", unit="checkpoint", disable=not progress, file=sys.stderr
    ) as bar:
        for step, source in bar:
            name = checkpoint_name(step, source)
            bar.set_postfix(step=step)
            try:
                state_dict = load_checkpoint(source)[0]
                _load_into(model, state_dict, rnn_module)
            except CheckpointError as e:
                skipped.append(Skipped(step, name, str(e)))
                tqdm.tqdm.write(str(skipped[-1]), file=sys.stderr)
                continue
            try:
                add_rnn_units(
                    writer, tag, rnn_module, probe, global_step=step, readout=readout_fn, rollout=rollout,
                    model=model, **options
                )
            except Exception as e:
                if hasattr(e, "add_note"):  # Python 3.11+
                    e.add_note(f"(while logging checkpoint {name}, step {step})")
                raise
            logged.append(step)
    return BackfillReport(tuple(logged), tuple(skipped))


def load_checkpoint(source):
    """``(state_dict, step or None)`` of a checkpoint: a file path or an already
    loaded dict. The state dict is the dict itself or its ``"state_dict"``,
    ``"model_state_dict"`` or ``"model"`` entry; ``step`` is the ``"step"`` or
    ``"global_step"`` entry beside it, if any.

    Raises:
      CheckpointError: the file cannot be read by ``torch.load(weights_only=True)``,
        holds no dict, or has a step that is not an integer >= 0.
    """
    loaded = source
    if not isinstance(source, Mapping):
        try:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many types for a bad file
            raise CheckpointError(f"cannot be loaded: {_reason(e)}") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"holds a {type(loaded).__name__}, expected a state dict {_ACCEPTED}")
    for key in STATE_DICT_KEYS:
        if isinstance(loaded.get(key), Mapping):
            return loaded[key], _file_step(loaded)
    return loaded, None


def step_in_name(path):
    """The last integer in the file name of ``path``, its extension aside
    (``ckpt-1200.pt`` -> 1200, ``epoch3_step500.pth`` -> 500), or ``None``."""
    name = os.path.basename(os.fspath(path))
    stem, extension = os.path.splitext(name)
    numbers = re.findall(r"\d+", name if extension[1:].isdigit() else stem)
    return int(numbers[-1]) if numbers else None


def checkpoint_name(step, source):
    """How reports name a checkpoint: its path, or ``<state dict at step N>``."""
    return f"<state dict at step {step}>" if isinstance(source, Mapping) else os.fspath(source)


def find_rnn(model):
    """The recurrent layer of ``model``: the model itself if it is an ``nn.RNN``,
    ``GRU``, ``LSTM`` or one of their cells, else its only such submodule.

    Raises:
      ValueError: none or several, naming them; pass ``rnn=`` then.
    """
    if isinstance(model, RECURRENT_TYPES):
        return model
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, RECURRENT_TYPES)]
    if len(found) == 1:
        return found[0][1]
    which = "none" if not found else f"{len(found)}: " + ", ".join(repr(name) for name, _ in found)
    raise ValueError(
        f"rnn: cannot tell the recurrent layer of {type(model).__name__} (nn.RNN/GRU/LSTM or cell "
        f"submodules: {which}); pass rnn= (--rnn) an attribute path such as 'rnn', or a function model -> module"
    )


def _ordered(checkpoints):
    """``checkpoints`` as a list of ``(step, source)`` sorted by step, checked."""
    if isinstance(checkpoints, (str, bytes, os.PathLike, Mapping)) or not hasattr(checkpoints, "__iter__"):
        raise ValueError(
            f"checkpoints: expected an iterable of (step, source) pairs, got {type(checkpoints).__name__}"
        )
    pairs = []
    for i, pair in enumerate(checkpoints):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"checkpoints[{i}]: expected a (step, source) pair, got {pair!r}")
        step, source = pair
        step = check_int(f"checkpoints[{i}] step", step, 0)
        if not isinstance(source, (str, os.PathLike, Mapping)):
            raise ValueError(
                f"checkpoints[{i}] source: expected a file path or a state dict, got {type(source).__name__}"
            )
        pairs.append((step, source))
    if not pairs:
        raise ValueError("checkpoints: expected at least one (step, source) pair, got none")
    pairs.sort(key=lambda pair: pair[0])
    for (a, first), (b, second) in zip(pairs, pairs[1:]):
        if a == b:
            raise ValueError(
                f"checkpoints: step {a} is given twice ({checkpoint_name(a, first)} and "
                f"{checkpoint_name(b, second)}); each step is logged once"
            )
    return pairs


def _part(argument, how, model):
    """The part of ``model`` that ``how`` (attribute path or function) names."""
    if isinstance(how, nn.Module):
        raise TypeError(
            f"{argument}: got an nn.Module; pass an attribute path such as 'head' or a function "
            "model -> part, so that the part comes from the model each checkpoint is loaded into"
        )
    if callable(how):
        return how(model)
    if not isinstance(how, str) or not how:
        raise ValueError(
            f"{argument}: expected an attribute path such as 'rnn' or a function model -> part, got {how!r}"
        )
    part = model
    for name in how.split("."):
        try:
            part = getattr(part, name)
        except AttributeError:
            raise ValueError(
                f"{argument}: {type(model).__name__} has no {how!r} ({type(part).__name__} has no attribute {name!r})"
            ) from None
    return part


def _load_into(model, state_dict, rnn_module):
    try:
        model.load_state_dict(state_dict)
    except Exception as e:  # RuntimeError for keys and shapes, others for odd values
        raise CheckpointError(f"does not fit the model: {_reason(e)}") from None
    if isinstance(rnn_module, nn.Module):
        for name, p in rnn_module.named_parameters():
            if not torch.isfinite(p).all():
                raise CheckpointError(f"NaN or Inf in the recurrent layer's parameter {name!r}")


def _file_step(loaded):
    for key in STEP_KEYS:
        if key in loaded:
            try:
                return check_int(repr(key), loaded[key], 0)
            except ValueError as e:
                raise CheckpointError(f"its step: {e}") from None
    return None


def _reason(error, limit=500):
    """A one-line reason from ``torch.load`` or ``load_state_dict``'s error."""
    text = " ".join(str(error).split())
    if "WeightsUnpickler error:" in text:  # torch.load's long weights_only message: keep its core
        core = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0]
        text = "not a weights-only torch.save file: " + core.split(". Please use")[0].strip()
        if "Unsupported global" in core:
            text += " (a whole pickled model? save model.state_dict() instead)"
    elif isinstance(error, EOFError):
        text = "the file is empty or cut short"
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
