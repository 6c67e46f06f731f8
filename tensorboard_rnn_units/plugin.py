"""The rnn_units TensorBoard plugin: HTTP routes over ``context.data_provider``.

Reads records through the data provider, so it works with both of
TensorBoard's loaders (``--load_fast=true``, RustBoard, and ``false``), and
data files through ``reader``. Routes (under ``/data/plugin/rnn_units``;
details in ``docs/CONTRACTS.md``):

- ``/tags``: ``{run: {tag: description}}``;
- ``/problems``: ``[{"run", "tag", "reason"}]`` of the tags it cannot read;
- ``/steps?run=&tag=``: ``[{"step", "wall_time"}, ...]`` ascending;
- ``/features?run=&tag=&step=[&units=START:STOP]``: one step's arrays (of
  those units), in the ``wire`` format;
- ``/unit?run=&tag=&unit=``: one unit across all steps, in the ``wire`` format;
- ``/exemplars?run=&tag=&step=&unit=&weighting=``: a unit's best windows
  with the probe sequences they come from (JSON);
- ``/change``, ``/drift``, ``/similarity``, ``/match``, ``/order``,
  ``/coverage``: units compared across steps and runs (``comparisons``);
- ``/index.js``, ``/static/<path>``: the frontend's JavaScript and CSS.

TensorBoard imports this module at start-up, so it must never import torch
(users may not have it; an import error here would stop TensorBoard).
"""

import importlib.resources
import os
import posixpath
import re

import numpy as np
from werkzeug import wrappers

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin

from tensorboard_rnn_units import comparisons
from tensorboard_rnn_units import metadata
from tensorboard_rnn_units import reader
from tensorboard_rnn_units import wire

# Steps kept per tag unless --samples_per_plugin says otherwise; both loaders
# would otherwise keep only 10 (Python) or 100 (RustBoard).
DEFAULT_SAMPLES = 1000
_ALL_STEPS = 2**31 - 1

_FRONTEND = importlib.resources.files("tensorboard_rnn_units.frontend")
_MIME_TYPES = {".js": "text/javascript", ".css": "text/css"}
# One path segment of a static file: no "..", no hidden files, no separators.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
# Integers travel as int64, as TensorBoard's steps do.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_INT64 = range(-(2**63), 2**63)
# Longer query values are refused (run and tag names are far shorter).
_MAX_ARG = 4096
_UNIT_RANGE = re.compile(r"([0-9]{0,19}):([0-9]{0,19})")


class RnnUnitsPlugin(base_plugin.TBPlugin):
    """Serves logged unit features to the frontend in ``frontend/``."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        # --samples_per_plugin rnn_units=0 means "keep all" to the loaders;
        # a downsample of 0 would read none of them.
        downsample = (context.sampling_hints or {}).get(self.plugin_name, DEFAULT_SAMPLES) or _ALL_STEPS
        self._reader = reader.StepReader(context.data_provider, context.logdir, downsample)
        self._comparisons = comparisons.Comparisons(self._reader)

    def get_plugin_apps(self):
        return {
            "/tags": self._serve_tags,
            "/problems": self._serve_problems,
            "/steps": self._serve_steps,
            "/features": self._serve_features,
            "/unit": self._serve_unit,
            "/exemplars": self._serve_exemplars,
            "/change": self._serve_change,
            "/drift": self._serve_drift,
            "/similarity": self._serve_similarity,
            "/match": self._serve_match,
            "/order": self._serve_order,
            "/coverage": self._serve_coverage,
            "/index.js": self._serve_index_js,
            "/static/*": self._serve_static,
        }

    def is_active(self):
        return False  # TensorBoard asks the data provider which plugins have data.

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path="/index.js", tab_name="RNN Units"
        )

    # Routes: parse the request, call an *_impl method, respond.

    @wrappers.Request.application
    def _serve_tags(self, request):
        result = self.tags_impl(*_context(request))
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_problems(self, request):
        result = self._reader.unreadable(*_context(request))
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_steps(self, request):
        run, tag = _arg(request, "run"), _arg(request, "tag")
        result = self.steps_impl(*_context(request), run, tag)
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_features(self, request):
        header, arrays = self.features_impl(
            *_context(request),
            _arg(request, "run"),
            _arg(request, "tag"),
            _int_arg(request, "step"),
            _range_arg(request, "units"),
        )
        return _respond_wire(request, header, arrays)

    @wrappers.Request.application
    def _serve_unit(self, request):
        header, arrays = self.unit_impl(
            *_context(request),
            _arg(request, "run"),
            _arg(request, "tag"),
            _int_arg(request, "unit"),
        )
        return _respond_wire(request, header, arrays)

    @wrappers.Request.application
    def _serve_exemplars(self, request):
        result = self.exemplars_impl(
            *_context(request), _arg(request, "run"), _arg(request, "tag"), _int_arg(request, "step"),
            _int_arg(request, "unit"), _weighting_arg(request),
        )
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_change(self, request):
        result = self._comparisons.change(
            *_context(request), _arg(request, "run"), _arg(request, "tag"),
            _int_arg(request, "step_a"), _int_arg(request, "step_b"),
        )
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_drift(self, request):
        threshold = _float_arg(request, "threshold", comparisons.DEFAULT_THRESHOLD)
        header, arrays = self._comparisons.drift(
            *_context(request), _arg(request, "run"), _arg(request, "tag"), threshold
        )
        return _respond_wire(request, header, arrays)

    @wrappers.Request.application
    def _serve_similarity(self, request):
        header, arrays = self._comparisons.similarity(*_context(request), _arg(request, "run"), _arg(request, "tag"))
        return _respond_wire(request, header, arrays)

    @wrappers.Request.application
    def _serve_match(self, request):
        result = self._comparisons.match(
            *_context(request), _arg(request, "run"), _arg(request, "tag"), _int_arg(request, "step"),
            _arg(request, "other_run"), _int_arg(request, "other_step"),
        )
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_coverage(self, request):
        header, arrays = self._comparisons.coverage(
            *_context(request), _arg(request, "run"), _arg(request, "tag"), _weighting_arg(request)
        )
        return _respond_wire(request, header, arrays)

    @wrappers.Request.application
    def _serve_order(self, request):
        result = self._comparisons.order(
            *_context(request), _arg(request, "run"), _arg(request, "tag"), _int_arg(request, "step")
        )
        return http_util.Respond(request, result, "application/json")

    @wrappers.Request.application
    def _serve_index_js(self, request):
        return http_util.Respond(request, *self.static_impl("index.js"))

    @wrappers.Request.application
    def _serve_static(self, request):
        # TensorBoard has already stripped any --path_prefix and experiment.
        _, _, path = request.path.partition("/static/")
        return http_util.Respond(request, *self.static_impl(path))

    # Implementations: plain data in and out, testable without HTTP.

    def tags_impl(self, ctx, experiment):
        """Returns ``{run: {tag: description}}``, each the tag's latest step's layout."""
        result = {}
        for run, tags in self._reader.tags(ctx, experiment).items():
            for tag, data in tags.items():
                step = self._reader.latest_readable(ctx, experiment, run, tag, data)
                if step is not None:
                    result.setdefault(run, {})[tag] = metadata.describe(step.header)
        return result

    def steps_impl(self, ctx, experiment, run, tag):
        """Returns ``[{"step", "wall_time"}, ...]`` ascending by step."""
        data = self._reader.series(ctx, experiment, run, tag)
        return [{"step": datum.step, "wall_time": datum.wall_time} for datum in data]

    def features_impl(self, ctx, experiment, run, tag, step, units=None):
        """Returns ``(header, arrays)`` of one step, its per-unit arrays cut to ``units``.

        Args:
          units: ``(start, stop)`` with ``None`` for an open end, like a
            Python slice of the step's units (clipped to them); all when ``None``.

        Raises:
          NotFoundError: no such run, tag or step.
          InvalidArgumentError: ``units`` selects none of the step's units.
        """
        datum = self._reader.datum(ctx, experiment, run, tag, step)
        count = self._reader.step(ctx, experiment, run, tag, datum).header["units"]
        start, stop, _ = slice(*(units or (None, None))).indices(count)
        if start >= stop:
            raise errors.InvalidArgumentError(
                f"units={_format_range(units)} selects none of the {count} units of step {step}"
            )
        header, arrays = self._reader.read(ctx, experiment, run, tag, datum, start, stop)
        header = dict(metadata.describe(header), step=datum.step, wall_time=datum.wall_time,
                      unit_range=[start, stop])
        return header, arrays

    def unit_impl(self, ctx, experiment, run, tag, unit):
        """Returns ``(header, arrays)`` of one unit, each array stacked over steps.

        The steps stacked are those with the layout of the latest step that
        has ``unit``; steps of another layout (a layer resized under the same
        tag by another process) are listed in ``other_layout_steps``, and
        steps that cannot be read in ``unreadable_steps`` (``[{"step",
        "reason"}]``): one broken step does not lose the filmstrip.

        Raises:
          NotFoundError: no such run or tag, or no readable step has ``unit``.
        """
        data = self._reader.series(ctx, experiment, run, tag)
        unreadable = {}
        steps = self._reader.try_each(lambda d: self._reader.step(ctx, experiment, run, tag, d), data, unreadable)
        having = [datum for datum, step in zip(data, steps) if step and 0 <= unit < step.header["units"]]
        read = lambda datum: self._reader.read(ctx, experiment, run, tag, datum, unit, unit + 1)
        rows = [(datum, result[0], reader.take_unit(result[1], 0))
                for datum, result in zip(having, self._reader.try_each(read, having, unreadable)) if result]
        if not rows:
            most = max((step.header["units"] for step in steps if step), default=0)
            raise errors.NotFoundError(
                f"unit {unit} out of range: the readable steps of run {run!r}, tag {tag!r} have "
                f"units 0..{most - 1}" + (f"; {len(unreadable)} steps are unreadable" if unreadable else "")
            )
        shape = lambda arrays: [(name, array.shape, axes) for name, (array, axes) in arrays.items()]
        latest = shape(rows[-1][2])
        stacked = [(datum, arrays) for datum, _, arrays in rows if shape(arrays) == latest]
        shown = {datum.step for datum, _ in stacked}
        header = dict(
            metadata.describe(rows[-1][1]),
            unit=unit,
            steps=[datum.step for datum, _ in stacked],
            wall_times=[datum.wall_time for datum, _ in stacked],
            other_layout_steps=[d.step for d in data if d.step not in shown and d.step not in unreadable],
            unreadable_steps=[{"step": step, "reason": reason} for step, reason in sorted(unreadable.items())],
        )
        arrays = {
            name: (np.stack([row[name][0] for _, row in stacked]), ["step", *axes])
            for name, _, axes in latest
        }
        return header, arrays

    def exemplars_impl(self, ctx, experiment, run, tag, step, unit, weighting):
        """Returns ``unit``'s best windows under ``weighting`` at ``step``, each
        with the whole probe sequence it comes from, so a viewer can show it in
        context: ``{"display", "window", "weighting", "exemplars": [{"sequence",
        "start", "end", "signal", "tokens" or "values"}]}``.

        Raises:
          NotFoundError: no such step, unit or weighting, or the step has no exemplars.
        """
        datum = self._reader.datum(ctx, experiment, run, tag, step)
        header = self._reader.step(ctx, experiment, run, tag, datum).header
        if not 0 <= unit < header["units"]:
            raise errors.NotFoundError(f"unit {unit} out of range: step {step} has units 0..{header['units'] - 1}")
        names = [f"{weighting}/exemplar_{part}" for part in ("sequence", "end", "signal")]
        _, arrays = self._reader.read(ctx, experiment, run, tag, datum, unit, unit + 1, names)
        if len(arrays) < len(names):
            raise errors.NotFoundError(
                f"step {step} of run {run!r}, tag {tag!r} has no {weighting!r} exemplars"
                + ("" if weighting in (header.get("weightings") or []) else f" (it logged {header.get('weightings')})")
            )
        taken = reader.take_unit(arrays, 0)
        sequence, end, signal = (taken[n][0] for n in names)
        axes, rows = self._reader.probe_sequences(ctx, experiment, run, tag, datum, [int(n) for n in sequence])
        key = "tokens" if axes[-1] == "time" else "values"
        window = header["window"]
        return {
            "display": header["display"],
            "window": window,
            "weighting": weighting,
            "exemplars": [
                {"sequence": int(n), "start": int(e) - window, "end": int(e), "signal": _json_float(s),
                 key: row.tolist() if key == "tokens" else np.where(np.isfinite(row), row, 0).astype(float).tolist()}
                for n, e, s, row in zip(sequence, end, signal, rows)
            ],
        }

    def static_impl(self, path):
        """Returns ``(bytes, mime type)`` of the frontend file at relative ``path``.

        Raises:
          InvalidArgumentError: a path that could leave the frontend folder.
          NotFoundError: no such file, or not JavaScript or CSS.
        """
        segments = path.split("/")
        if not all(_SAFE_SEGMENT.fullmatch(segment) for segment in segments):
            raise errors.InvalidArgumentError(f"bad static file path {path!r}")
        mime_type = _MIME_TYPES.get(posixpath.splitext(path)[1])
        folder = os.path.realpath(str(_FRONTEND))
        resource = os.path.realpath(os.path.join(folder, *segments))  # links resolved
        try:
            if mime_type is None or not resource.startswith(folder + os.sep) or not os.path.isfile(resource):
                raise OSError("not a frontend file")
            with open(resource, "rb") as f:
                return f.read(), mime_type
        except OSError:
            raise errors.NotFoundError(f"no static file {path!r}") from None


class RnnUnitsLoader(base_plugin.TBLoader):
    """Loads the plugin and makes TensorBoard keep enough steps of its data."""

    def fix_flags(self, flags):
        """Defaults ``--samples_per_plugin`` to ``DEFAULT_SAMPLES`` for this plugin."""
        flags.samples_per_plugin.setdefault(metadata.PLUGIN_NAME, DEFAULT_SAMPLES)

    def load(self, context):
        return RnnUnitsPlugin(context)


def _context(request):
    environ = request.environ
    return plugin_util.context(environ), plugin_util.experiment_id(environ)


def _respond_wire(request, header, arrays):
    return http_util.Respond(request, wire.pack(header, arrays), "application/octet-stream")


def _arg(request, name):
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(f"missing query parameter {name!r}")
    if len(value) > _MAX_ARG:
        raise errors.InvalidArgumentError(f"query parameter {name!r} is longer than {_MAX_ARG} characters")
    return value


def _range_arg(request, name):
    """``(start, stop)`` of a ``START:STOP`` parameter (either may be empty), or ``None`` if absent."""
    value = request.args.get(name)
    if value is None:
        return None
    match = _UNIT_RANGE.fullmatch(value)
    if not match:
        raise errors.InvalidArgumentError(
            f"query parameter {name!r} must be START:STOP with non-negative integers, got {value!r}"
        )
    return tuple(int(n) if n else None for n in match.groups())


def _format_range(units):
    return ":".join("" if n is None else str(n) for n in units) if units else ":"


def _weighting_arg(request):
    """The ``weighting`` parameter, ``"top"`` if absent."""
    weighting = request.args.get("weighting", "top")
    if weighting not in metadata.WEIGHTINGS:
        raise errors.InvalidArgumentError(
            f"query parameter 'weighting' must be one of {metadata.WEIGHTINGS}, got {weighting[:40]!r}"
        )
    return weighting


def _json_float(value):
    """A float JSON can carry: ``None`` for NaN or infinity."""
    value = float(value)
    return value if np.isfinite(value) else None


def _float_arg(request, name, default):
    """A finite number parameter, ``default`` if absent."""
    value = request.args.get(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number):
        raise errors.InvalidArgumentError(f"query parameter {name!r} must be a number, got {value!r}")
    return number


def _int_arg(request, name):
    value = _arg(request, name)
    if not _INTEGER.fullmatch(value) or int(value) not in _INT64:
        raise errors.InvalidArgumentError(
            f"query parameter {name!r} must be an integer in the int64 range, got {value[:40]!r}"
        )
    return int(value)
