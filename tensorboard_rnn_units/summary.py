"""UnitFeatures -> TensorBoard ``Summary`` proto -> ``SummaryWriter``.

``rnn_units_pb`` needs neither TensorFlow nor a writer; ``add_unit_features``
and ``add_rnn_units`` follow ``SummaryWriter.add_*`` conventions.
"""

import warnings
import weakref

import numpy as np

from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tensorboard_rnn_units import metadata
from tensorboard_rnn_units.features import UnitFeatures, compute_unit_features
from tensorboard_rnn_units.validation import check_int

# Last step written per writer and tag, to warn about steps that go backwards.
_last_steps = weakref.WeakKeyDictionary()


def describe(features):
    """The JSON description of a tag (see ``metadata``) for these features."""
    return {
        "units": features.units,
        "window": features.window,
        "rollout": features.rollout_steps,
        "input_size": features.input_size,
        "positions": features.positions,
        "display": features.display,
        "class_names": features.class_names,
        "weightings": list(features.weighted),
        "signal": features.signal,
        "layer": features.layer,
        "context": features.context,
        "num_windows": features.num_windows,
        "top_fraction": features.top_fraction,
    }


def step_arrays(features):
    """The named numpy arrays of one step, in the order of ``metadata``'s table."""
    f16 = lambda t: metadata.compact_float(t.numpy())
    f32 = lambda t: t.numpy().astype(np.float32)
    arrays = {"mean_window": f16(features.mean_window)}
    if features.mean_rollout is not None:
        arrays["mean_rollout"] = f16(features.mean_rollout)
    arrays["signal_mean"] = f32(features.signal_mean)
    arrays["signal_max"] = f32(features.signal_max)
    if features.class_counts is not None:
        arrays["class_counts"] = f32(features.class_counts)
    for name, w in features.weighted.items():
        arrays[f"{name}/average"] = f16(w.average)
        if w.rollout is not None:
            arrays[f"{name}/rollout"] = f16(w.rollout)
        arrays[f"{name}/active_fraction"] = f32(w.active_fraction)
        arrays[f"{name}/effective_sample_size"] = f32(w.effective_sample_size)
        arrays[f"{name}/position_share"] = f32(w.position_share)
        if w.class_weight is not None:
            arrays[f"{name}/class_weight"] = f32(w.class_weight)
        arrays[f"{name}/dead"] = w.dead.numpy().astype(np.uint8)
    return arrays


def rnn_units_pb(tag, features, description=None):
    """A ``Summary`` proto holding ``features`` under ``tag``, for any event writer.

    Args:
      tag: the summary tag, e.g. ``"rnn/units"``.
      features: ``UnitFeatures`` from ``compute_unit_features``.
      description: optional Markdown shown with the tag.
    """
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag: expected a non-empty string, got {tag!r}")
    if not isinstance(features, UnitFeatures):
        raise TypeError(f"features: expected UnitFeatures from compute_unit_features, got {type(features).__name__}")
    tag_description = describe(features)
    blobs = metadata.encode_step(tag_description, step_arrays(features))
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(blobs))]
        ),
        string_val=blobs,
    )
    summary_metadata = metadata.create_summary_metadata(
        tag_description, display_name=tag, summary_description=description or ""
    )
    return summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, metadata=summary_metadata, tensor=tensor)]
    )


def add_unit_features(writer, tag, features, global_step=None, walltime=None):
    """Writes precomputed ``features`` to a ``SummaryWriter``.

    Steps must strictly increase per tag (TensorBoard keeps one value per
    step); a step that does not gets a ``UserWarning``.

    Raises:
      TypeError: ``writer`` is not a ``torch.utils.tensorboard.SummaryWriter``,
        or ``features`` not ``UnitFeatures``.
      ValueError: ``tag`` empty, or ``global_step`` not an integer.
    """
    _check_writer(writer)
    _write(writer, tag, features, global_step, walltime)


def _check_writer(writer):
    from torch.utils.tensorboard import SummaryWriter

    if not isinstance(writer, SummaryWriter):
        raise TypeError(
            f"writer: expected a torch.utils.tensorboard.SummaryWriter, got {type(writer).__name__}; "
            "for another writer, write tensorboard_rnn_units.rnn_units_pb(tag, features) yourself"
        )


def _write(writer, tag, features, global_step, walltime):
    """Writes the summary, warning (at the user's call) when steps do not increase."""
    summary = rnn_units_pb(tag, features)
    if global_step is not None:
        global_step = check_int("global_step", global_step, 0)
        steps = _last_steps.setdefault(writer, {})
        last = steps.get(tag)
        if last is not None and global_step <= last:
            warnings.warn(
                f"global_step {global_step} for tag {tag!r} does not increase "
                f"(last was {last}); steps must strictly increase per tag",
                stacklevel=3,  # the user's call of add_unit_features or add_rnn_units
            )
        steps[tag] = global_step
    writer._get_file_writer().add_summary(summary, global_step, walltime)


def add_rnn_units(
    writer,
    tag,
    rnn,
    probe,
    readout=None,
    rollout=0,
    weightings=("top", "relu"),
    global_step=None,
    walltime=None,
    **compute_kwargs,
):
    """Computes the units' features on ``probe`` and writes them under ``tag``.

    Both weightings are logged by default, computed together (windows and
    rollouts run once), so the viewer can switch between them (``"top"``
    first: it is shown by default). Other
    keyword arguments go to ``compute_unit_features`` (``layer``,
    ``signal``, ``top_fraction``, ``context``, ``batch_size``). Steps must
    strictly increase per tag; see ``add_unit_features``.

    Returns:
      the ``UnitFeatures`` written.
    """
    _check_writer(writer)
    features = compute_unit_features(
        rnn, probe, readout=readout, rollout=rollout, weighting=weightings, **compute_kwargs
    )
    _write(writer, tag, features, global_step, walltime)
    return features
