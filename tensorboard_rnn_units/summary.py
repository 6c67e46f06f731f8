"""UnitFeatures -> the summary format (``metadata``) -> any event writer.

``add_rnn_units`` and ``add_unit_features`` write each step's data to a file
in the run's ``plugins/rnn_units/`` folder and a small record under the tag
in the event file, so TensorBoard lists every step while holding only the
records in memory (a 4,096-unit step is about 10 MB). ``rnn_units_pb``
needs no writer: its ``Summary`` carries the data inline, for writers of
your own and small layers.
"""

import os
import secrets
import time
import warnings
import weakref
from typing import NamedTuple

import numpy as np

from tensorboard.compat import tf
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tensorboard_rnn_units import analysis
from tensorboard_rnn_units import metadata, worker
from tensorboard_rnn_units.features import UnitFeatures, compute_unit_features
from tensorboard_rnn_units.windows import process_shard
from tensorboard_rnn_units.validation import check_int

# Per writer: {tag: _Logged}, to catch steps that go backwards and layouts
# that change under a tag, and to log each unit's change since the last step.
_logged = weakref.WeakKeyDictionary()


def layout(features):
    """The tag's layout (``metadata.LAYOUT_KEYS``) of these features."""
    return {
        "units": features.units,
        "window": features.window,
        "rollout": features.rollout_steps,
        "input_size": features.input_size,
        "positions": features.positions,
        "display": features.display,
        "class_names": features.class_names,
        "signal": features.signal,
        "layer": features.layer,
        "context": features.context,
        "num_windows": features.num_windows,
        "probe_fingerprint": features.probe_fingerprint,
        "vocab": features.vocab,
        "channel_names": features.channel_names,
        "annotation_names": list(features.annotation_correlation) or None,
        "gate_names": None if features.gate_saturation is None else list(features.gate_saturation),
    }


def step_arrays(features):
    """The named ``(array, axes)`` of one step, in the order of ``metadata``'s table."""
    f16 = lambda t: metadata.compact_float(t.numpy())
    f32 = lambda t: t.numpy().astype(np.float32)
    arrays = {"mean_window": (f16(features.mean_window), ["window", "input"])}
    if features.mean_rollout is not None:
        arrays["mean_rollout"] = (f16(features.mean_rollout), ["rollout", "input"])
    arrays["signal_mean"] = (f32(features.signal_mean), ["unit"])
    arrays["signal_max"] = (f32(features.signal_max), ["unit"])
    sample = f16(features.activation_sample)
    arrays["activation_sample"] = (sample, ["unit", "sample"], False)
    if features.units > sample.shape[1]:  # else reading the sample is cheaper, and numpy's BLAS threads
        # would spin a core for about 0.1 s after the product, slowing the training beside them
        arrays["sample_gram"] = (analysis.gram(sample).astype(np.float16), ["sample", "other_sample"])
    if features.class_counts is not None:
        arrays["class_counts"] = (f32(features.class_counts), ["class"])
    if features.annotation_correlation:
        correlation = np.stack([f32(r) for r in features.annotation_correlation.values()], 1)
        arrays["annotation_correlation"] = (correlation, ["unit", "annotation"])
    if features.gate_saturation is not None:
        arrays["gate_saturation"] = (np.stack([f32(g) for g in features.gate_saturation.values()], 1), ["unit", "gate"])
        arrays["time_constant"] = (f32(features.time_constant), ["unit"])
    for name, w in features.weighted.items():
        arrays[f"{name}/average"] = (f16(w.average), ["unit", "window", "input"])
        if w.rollout is not None:
            arrays[f"{name}/rollout"] = (f16(w.rollout), ["unit", "rollout", "input"])
        arrays[f"{name}/active_fraction"] = (f32(w.active_fraction), ["unit"])
        arrays[f"{name}/effective_sample_size"] = (f32(w.effective_sample_size), ["unit"])
        arrays[f"{name}/position_share"] = (f32(w.position_share), ["unit", "end_position"])
        if w.class_weight is not None:
            arrays[f"{name}/class_weight"] = (f32(w.class_weight), ["unit", "class"])
            arrays[f"{name}/units_per_class"] = (analysis.units_per_class(w.class_weight.numpy()).astype(np.float32), ["class"])
        arrays[f"{name}/dead"] = (w.dead.numpy().astype(np.uint8), ["unit"])
        arrays[f"{name}/exemplar_sequence"] = (w.exemplar_sequence.numpy().astype(np.int32), ["unit", "exemplar"])
        arrays[f"{name}/exemplar_end"] = (w.exemplar_end.numpy().astype(np.int32), ["unit", "exemplar"])
        arrays[f"{name}/exemplar_signal"] = (f32(w.exemplar_signal), ["unit", "exemplar"])
    return arrays


def probe_array(features):
    """The probe's data as logged once per probe for exemplars: int32 tokens
    ``(N, T)`` or float16/32 sequences ``(N, T, D)``, with its axes."""
    data = features.probe_data.numpy()
    if features.vocab is not None:
        return data.astype(np.int32), ["sequence", "time"]
    return metadata.compact_float(data), ["sequence", "time", "input"]


def rnn_units_pb(tag, features, *, description=None):
    """A self-contained ``Summary`` proto of ``features`` under ``tag``, for any event writer.

    The data is inline in the event, which TensorBoard keeps in memory:
    ``add_unit_features`` suits large layers better.

    Args:
      tag: the summary tag, e.g. ``"rnn/units"``.
      features: ``UnitFeatures`` from ``compute_unit_features``.
      description: optional Markdown shown with the tag.
    """
    _check(tag, features)
    header, shared, chunks = _encode(tag, features, inline_probe=True)
    return _summary(tag, header, [shared, *chunks], description)


def add_unit_features(writer, tag, features, *, global_step, walltime=None):
    """Writes precomputed ``features`` under ``tag`` at ``global_step``.

    The step's data goes to ``<logdir>/plugins/rnn_units/`` of the writer's
    run, then its record to the event file. Steps must strictly increase
    per tag (TensorBoard keeps one value per step); a step that does not
    gets a ``UserWarning``. So does (once per name) a tag or run name (the
    logdir's last folder) holding a character TensorBoard's default loader
    cannot serve: ``"``, a backslash or a control character (newline, tab,
    NUL, ...).

    Args:
      writer: ``torch.utils.tensorboard.SummaryWriter`` or tensorboardX's.
      global_step: the training step, an integer >= 0.
      walltime: seconds since the epoch; the time of the call by default.

    Raises:
      TypeError: ``writer`` is not a SummaryWriter, or ``features`` not
        ``UnitFeatures``.
      ValueError: ``tag`` empty, ``global_step`` not an integer >= 0, or a
        layout (sizes, signal, probe, ...) other than the one this writer
        logged under ``tag`` before.
    """
    file_writer = _file_writer(writer)
    worker.settle(writer)  # earlier background steps first, in order
    _write(writer, file_writer, tag, features, global_step, walltime)


def _write(writer, file_writer, tag, features, global_step, walltime):
    """``add_unit_features``'s work; both public calls reach it at the same stack depth.
    Under ``torch.distributed`` only rank 0 writes (every rank has the same features)."""
    global_step = check_int("global_step", global_step, 0, 2**63 - 1)
    _check(tag, features)
    if process_shard()[0] != 0:
        return
    _warn_unservable_names(tag, file_writer.get_logdir())
    new_layout = layout(features)
    previous = _previous(writer, tag, global_step, new_layout)
    header, shared, chunks = _encode(tag, features, previous)
    header["file"] = f"{global_step:012d}-{secrets.token_hex(6)}.rnnu"
    folder = os.path.join(file_writer.get_logdir(), *metadata.PLUGIN_DIR)
    tf.io.gfile.makedirs(folder)
    if features.probe_data is not None:  # a loader probe's data is not kept
        header["probe"] = _write_probe(folder, features)
    # The data first: a reader that sees the record finds its whole file.
    with tf.io.gfile.GFile(os.path.join(folder, header["file"]), "wb") as f:
        f.write(b"".join([shared, *chunks]))
    file_writer.add_summary(_for_writer(file_writer, _summary(tag, header, [], None)), global_step, walltime)
    _logged.setdefault(writer, {})[tag] = _Logged(global_step, new_layout, features.activation_sample)


def add_rnn_units(
    writer,
    tag,
    rnn,
    probe,
    *,
    global_step,
    readout=None,
    rollout=0,
    model=None,
    weighting=("top", "relu"),
    walltime=None,
    background=False,
    **options,
):
    """Computes the units' features on ``probe`` and writes them under ``tag``.

    Everything after ``probe`` is keyword-only and ``global_step`` is
    required: a positional step would silently land elsewhere. Both
    weightings are logged by default, computed together (windows and
    rollouts run once), so the viewer can switch between them (``"top"``
    first: it is shown by default). ``readout`` and ``model`` are
    ``compute_unit_features``'s: pass ``model=`` (the ``nn.Module`` holding
    the readout's layers) with a ``lambda`` readout, so that its dropout and
    BatchNorm run in eval mode. ``options`` go to ``compute_unit_features``
    too (``layer``, ``signal``, ``top_fraction``, ``context``,
    ``batch_size``); see ``add_unit_features`` for the rest.

    ``background=True`` returns at once and measures in a worker thread,
    on a copy of ``rnn``, ``readout``, ``model`` and the probe's ``embed``
    as they are at the call (``readout`` and ``embed`` must then be modules
    or methods of one, not functions that would read the live model), so
    training goes on meanwhile: on a CPU, give torch fewer threads than
    cores (``torch.set_num_threads``) to leave the worker one (the worker
    computes with the calling thread's count as of each call, and while it
    runs Python's switch interval is at most 0.5 ms, so that its Python
    stalls the training loop only briefly). Steps are
    written in call order, at most two per writer pending (a third call
    waits); the writer's ``flush()`` and ``close()`` wait for them. A
    step's error is raised by its ``Future`` and, once, by the next call
    (which then logs nothing), ``flush()`` or ``close()`` on the writer
    (which waits for every pending step first), or printed at exit. Not under
    ``torch.distributed``, whose collectives must follow training's order.

    Returns:
      the ``UnitFeatures`` written; with ``background=True``, a
      ``concurrent.futures.Future`` of them.
    """
    file_writer = _file_writer(writer)
    measure = lambda rnn, readout, model, probe: compute_unit_features(
        rnn, probe, readout=readout, rollout=rollout, model=model, weighting=weighting, **options
    )
    if not background:
        worker.settle(writer)  # earlier background steps first, in order
        features = measure(rnn, readout, model, probe)
        _write(writer, file_writer, tag, features, global_step, walltime)
        return features
    global_step = check_int("global_step", global_step, 0, 2**63 - 1)
    _check_tag(tag)
    if process_shard()[1] > 1:
        raise ValueError(
            "background: not under torch.distributed, where every rank's collectives must run in "
            "training's order; log with background=False"
        )
    walltime = time.time() if walltime is None else walltime  # the call's time, not the worker's
    copies, marks = worker.snapshot(rnn, readout, model, probe)

    def job():
        features = measure(*copies)
        _write(writer, file_writer, tag, features, global_step, walltime)
        return features

    return worker.submit(writer, tag, global_step, job, marks)


def _check(tag, features):
    _check_tag(tag)
    if not isinstance(features, UnitFeatures):
        raise TypeError(f"features: expected UnitFeatures from compute_unit_features, got {type(features).__name__}")


def _check_tag(tag):
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag: expected a non-empty string, got {tag!r}")


_warned_names = set()  # (what, name) already warned about: once per name per process


def _warn_unservable_names(tag, logdir):
    """Warns, at the user's call via ``_write``, about a tag or run name holding a character that
    JSON escapes (``"``, a backslash, a control character such as a newline, tab or NUL): TensorBoard's
    default loader (RustBoard, ``--load_fast=true``) cannot parse its blob keys then."""
    run = os.path.basename(os.path.normpath(logdir))
    for what, name in (("tag", tag), ("run name", run)):
        char = next((c for c in name if c in '"\\' or c < " "), None)
        if char is not None and (what, name) not in _warned_names:
            _warned_names.add((what, name))
            warnings.warn(
                f"{what} {name!r} holds {char!r}, which TensorBoard's default loader (RustBoard, "
                "--load_fast=true) cannot serve: it answers 'failed to parse blob key: BadJson(...)' "
                "for this plugin's data; replace it, e.g. with '_'",
                stacklevel=4,  # the user's call of add_unit_features or add_rnn_units, via _write
            )


def _write_probe(folder, features):
    """Writes the probe's data once per run folder (named by its fingerprint)
    unless it is there; returns the header's ``probe`` entry."""
    name = f"probe-{features.probe_fingerprint}.rnnu"
    path = os.path.join(folder, name)
    if path not in _probes_written:
        array, axes = probe_array(features)
        # Written unless a whole copy is there (one cut short by a crash is rewritten).
        if not tf.io.gfile.exists(path) or tf.io.gfile.stat(path).length != array.nbytes:
            with tf.io.gfile.GFile(path, "wb") as f:
                f.write(metadata.encode_probe(array))
        _probes_written[path] = metadata.probe_spec(array, axes, name)
    return dict(_probes_written[path])


_probes_written = {}  # path -> header entry of the probe files known to exist, each checked once per process


def _encode(tag, features, previous=None, inline_probe=False):
    """``metadata.encode_step`` of ``features``; with the ``_Logged`` step
    before it, each unit's ``activation_change`` since that step too;
    ``inline_probe`` adds the probe's data as the whole array ``probe_data``."""
    description = dict(layout(features), weightings=list(features.weighted), top_fraction=features.top_fraction)
    arrays = step_arrays(features)
    if inline_probe and features.probe_data is not None:
        arrays[metadata.PROBE_ARRAY] = probe_array(features)
        description["probe"] = metadata.probe_spec(*arrays[metadata.PROBE_ARRAY], None)
    if previous is not None:
        change = analysis.change(previous.sample.numpy(), features.activation_sample.numpy())
        arrays["activation_change"] = (change.astype(np.float32), ["unit"], False)
        description["previous_step"] = previous.step
    return metadata.encode_step(description, arrays)


def _summary(tag, header, data_blobs, description):
    """The ``Summary`` of one step: the header blob, then ``data_blobs``."""
    blobs = [metadata.encode_json(header), *data_blobs]
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=blobs,
    )
    summary_metadata = metadata.create_summary_metadata(
        header, display_name=tag, summary_description=description or ""
    )
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=tensor)]
    )


def _file_writer(writer):
    """The event file writer of a PyTorch or tensorboardX ``SummaryWriter``."""
    get = getattr(writer, "_get_file_writer", None)
    file_writer = get() if callable(get) else None
    if not (hasattr(file_writer, "add_summary") and hasattr(file_writer, "get_logdir")):
        raise TypeError(
            f"writer: expected a torch.utils.tensorboard or tensorboardX SummaryWriter, got "
            f"{type(writer).__name__}; for another writer, write "
            "tensorboard_rnn_units.rnn_units_pb(tag, features) yourself"
        )
    return file_writer


def _for_writer(file_writer, summary):
    """``summary`` as the writer's own ``Summary`` class: tensorboardX has its own copy of the protos."""
    if type(file_writer).__module__.split(".")[0] == "tensorboardX":
        from tensorboardX.proto import summary_pb2 as tensorboardx_summary_pb2

        return tensorboardx_summary_pb2.Summary.FromString(summary.SerializeToString())
    return summary


class _Logged(NamedTuple):
    """What a writer logged last under a tag."""

    step: int
    layout: dict
    sample: object  # the activation sample (torch tensor), for the next step's change


def _previous(writer, tag, step, new_layout):
    """The ``_Logged`` step before ``step`` under ``tag`` (``None`` if none).

    Refuses a layout change under ``tag``; warns (at the user's call) when
    steps do not increase.
    """
    last = _logged.get(writer, {}).get(tag)
    if last is None:
        return None
    for key in metadata.LAYOUT_KEYS:
        if new_layout[key] != last.layout[key]:
            raise ValueError(
                f"tag {tag!r}: {key} is {new_layout[key]!r}, but this writer logged {last.layout[key]!r} "
                "under it before; a tag's layout cannot change, so log this model under a new tag"
            )
    if step <= last.step:
        warnings.warn(
            f"global_step {step} for tag {tag!r} does not increase "
            f"(last was {last.step}); steps must strictly increase per tag",
            stacklevel=4,  # the user's call of add_unit_features or add_rnn_units, via _write
        )
        return None
    return last
