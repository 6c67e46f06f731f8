"""The rnn_units TensorBoard plugin: HTTP routes over ``context.data_provider``.

Reads only through the data provider, so it works with both of
TensorBoard's loaders (``--load_fast=true``, RustBoard, and ``false``). Routes
(under ``/data/plugin/rnn_units``; details in ``docs/CONTRACTS.md``):

- ``/tags``: ``{run: {tag: description}}``;
- ``/steps?run=&tag=``: ``[{"step", "wall_time"}, ...]`` ascending;
- ``/features?run=&tag=&step=``: one step's arrays, in the ``wire`` format;
- ``/unit?run=&tag=&unit=``: one unit across all steps, in the ``wire`` format;
- ``/index.js``, ``/static/<path>``: the frontend's JavaScript and CSS.

TensorBoard imports this module at start-up, so it must never import torch
(users may not have it; an import error here would stop TensorBoard).
"""

import concurrent.futures
import contextlib
import importlib.resources
import logging
import posixpath
import re

import numpy as np
from werkzeug import wrappers

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

from tensorboard_rnn_units import metadata
from tensorboard_rnn_units import wire

logger = logging.getLogger(__name__)

# Steps kept per tag unless --samples_per_plugin says otherwise; both loaders
# would otherwise keep only 10 (Python) or 100 (RustBoard).
DEFAULT_SAMPLES = 1000
_ALL_STEPS = 2**31 - 1

_FRONTEND = importlib.resources.files("tensorboard_rnn_units.frontend")
_MIME_TYPES = {".js": "text/javascript", ".css": "text/css"}
# One path segment of a static file: no "..", no hidden files, no separators.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_INTEGER = re.compile(r"-?[0-9]+")
_READERS = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="rnn_units_read")


class RnnUnitsPlugin(base_plugin.TBPlugin):
    """Serves logged unit features to the frontend in ``frontend/``."""

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        # --samples_per_plugin rnn_units=0 means "keep all" to the loaders;
        # a downsample of 0 would read none of them.
        self._downsample_to = (context.sampling_hints or {}).get(
            self.plugin_name, DEFAULT_SAMPLES
        ) or _ALL_STEPS
        self._warned_unreadable = False

    def get_plugin_apps(self):
        return {
            "/tags": self._serve_tags,
            "/steps": self._serve_steps,
            "/features": self._serve_features,
            "/unit": self._serve_unit,
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
    def _serve_index_js(self, request):
        return http_util.Respond(request, *self.static_impl("index.js"))

    @wrappers.Request.application
    def _serve_static(self, request):
        # TensorBoard has already stripped any --path_prefix and experiment.
        _, _, path = request.path.partition("/static/")
        return http_util.Respond(request, *self.static_impl(path))

    # Implementations: plain data in and out, testable without HTTP.

    def tags_impl(self, ctx, experiment):
        """Returns ``{run: {tag: description}}`` of every readable tag."""
        listing = self._data_provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=self.plugin_name
        )
        result = {}
        for run, tags in listing.items():
            for tag, series in tags.items():
                description = self._parse(run, tag, series.plugin_content)
                if description is not None:
                    result.setdefault(run, {})[tag] = description
        return result

    def steps_impl(self, ctx, experiment, run, tag):
        """Returns ``[{"step", "wall_time"}, ...]`` ascending by step."""
        _, series = self._series(ctx, experiment, run, tag)
        return [{"step": datum.step, "wall_time": datum.wall_time} for datum in series]

    def features_impl(self, ctx, experiment, run, tag, step):
        """Returns ``(header, arrays)`` of one step; the header gains step and wall time."""
        _, series = self._series(ctx, experiment, run, tag)
        datum = next((d for d in series if d.step == step), None)
        if datum is None:
            raise errors.NotFoundError(f"no step {step} in run {run!r}, tag {tag!r}")
        [(header, arrays)] = self._read_steps(ctx, run, tag, [datum])
        return dict(header, step=datum.step, wall_time=datum.wall_time), arrays

    def unit_impl(self, ctx, experiment, run, tag, unit):
        """Returns ``(header, arrays)`` of one unit, each array stacked over steps.

        Per-unit arrays are sliced at ``unit``, the others kept whole; the
        leading axis of each is the step, as listed in ``header["steps"]``.
        Steps logged with another layout than the latest (a rerun with other
        sizes into the same run directory) cannot be stacked and are left out.

        Raises:
          NotFoundError: no such run, tag or steps, or ``unit`` out of range.
            A unit the tag's description does not have is answered before any
            step's arrays are read (at most the latest step's header is).
        """
        description, series = self._series(ctx, experiment, run, tag)
        if not series:
            raise errors.NotFoundError(f"no steps in run {run!r}, tag {tag!r}")
        units = description["units"]
        if unit >= units:
            # The description is the tag's *first* logged step's. A rerun with
            # more units into the same run directory has a latest layout (the
            # one served) with more: its header blob, one small read, decides.
            units = self._units_of_latest(ctx, run, tag, series[-1])
        _check_unit(run, tag, unit, units)
        series = series[::-1]  # latest first: its layout is the one stacked
        rows, header, layout = [], None, None
        for datum, (step_header, arrays) in zip(series, self._read_steps(ctx, run, tag, series)):
            shapes = [(name, array.shape) for name, array in arrays.items()]
            if layout is None:
                header, layout = step_header, shapes
                _check_unit(run, tag, unit, header["units"])  # the latest layout may have fewer
            elif shapes != layout:
                continue
            # Copies: a view would keep the whole decoded step blob alive until np.stack.
            sliced = {
                name: (array[unit] if metadata.is_per_unit(name) else array).copy()
                for name, array in arrays.items()
            }
            rows.append((datum, sliced))
        rows.reverse()
        header = dict(
            header,
            unit=unit,
            steps=[datum.step for datum, _ in rows],
            wall_times=[datum.wall_time for datum, _ in rows],
        )
        arrays = {name: np.stack([row[name] for _, row in rows]) for name, _ in layout}
        return header, arrays

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
        resource = _FRONTEND.joinpath(*segments)
        if mime_type is None or not resource.is_file():
            raise errors.NotFoundError(f"no static file {path!r}")
        return resource.read_bytes(), mime_type

    # Reading.

    def _series(self, ctx, experiment, run, tag):
        """``(description, step data ascending by step)`` of a readable run/tag; 404 otherwise."""
        run_tag_filter = provider.RunTagFilter(runs=[run], tags=[tag])
        listing = self._data_provider.list_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=self.plugin_name,
            run_tag_filter=run_tag_filter,
        )
        series = listing.get(run, {}).get(tag)
        description = None if series is None else self._parse(run, tag, series.plugin_content)
        if description is None:
            raise errors.NotFoundError(
                f"no {self.plugin_name} data for run {run!r}, tag {tag!r}"
            )
        data = self._data_provider.read_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=self.plugin_name,
            downsample=self._downsample_to,
            run_tag_filter=run_tag_filter,
        )
        return description, sorted(data.get(run, {}).get(tag, ()), key=lambda datum: datum.step)

    def _read_steps(self, ctx, run, tag, data):
        """Yields ``(header, arrays)`` of each datum in turn; blobs are read concurrently.

        With RustBoard each ``read_blob`` is a gRPC call of a few milliseconds,
        mostly waiting; overlapping them makes reading many steps ~5x faster.
        """
        keys = [blob.blob_key for datum in data for blob in datum.values]
        blobs = _READERS.map(lambda key: self._data_provider.read_blob(ctx, blob_key=key), keys)
        for datum in data:
            yield _decode_step(run, tag, datum, [next(blobs) for _ in datum.values])

    def _units_of_latest(self, ctx, run, tag, datum):
        """The ``units`` of a step's header blob, read alone; 404 if unreadable."""
        with _readable(run, tag, datum):
            if not datum.values:
                raise ValueError("no blobs")
            blob = self._data_provider.read_blob(ctx, blob_key=datum.values[0].blob_key)
            units = metadata.decode_header(blob).get("units")
            if isinstance(units, bool) or not isinstance(units, int):
                raise ValueError(f"'units' is {units!r}")
        return units

    def _parse(self, run, tag, content):
        """The tag's description; ``None``, with one warning in all, if unreadable or newer."""
        try:
            return metadata.parse_plugin_metadata(content)
        except ValueError as e:
            if not self._warned_unreadable:
                self._warned_unreadable = True
                logger.warning(
                    "Skipping rnn_units data it cannot read (run %r, tag %r): %s", run, tag, e
                )
            return None


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


def _decode_step(run, tag, datum, blobs):
    with _readable(run, tag, datum):
        return metadata.decode_step(blobs)


@contextlib.contextmanager
def _readable(run, tag, datum):
    """Turns a step's format error (``ValueError``) into a 404 naming the step."""
    try:
        yield
    except ValueError as e:
        raise errors.NotFoundError(
            f"step {datum.step} of run {run!r}, tag {tag!r} is unreadable: {e}"
        ) from None


def _check_unit(run, tag, unit, units):
    if not 0 <= unit < units:
        raise errors.NotFoundError(
            f"unit {unit} out of range: run {run!r}, tag {tag!r} has {units} units"
        )


def _respond_wire(request, header, arrays):
    return http_util.Respond(request, wire.pack(header, arrays), "application/octet-stream")


def _arg(request, name):
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(f"missing query parameter {name!r}")
    return value


def _int_arg(request, name):
    value = _arg(request, name)
    if not _INTEGER.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"query parameter {name!r} must be an integer, got {value!r}"
        )
    return int(value)
