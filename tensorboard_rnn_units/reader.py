"""Reading logged steps for the plugin: the I/O behind its routes.

A step's record comes from TensorBoard's data provider (either loader); its
data from the record's inline blobs or from its file in the run's
``plugins/rnn_units/`` folder, read through TensorBoard's ``gfile`` so remote
logdirs work too. Only the bytes of the units asked for are read.

Two caches keep requests cheap: each tag's list of steps, refreshed only
when the data provider's cheap listing says the tag changed (reading every
step's reference from RustBoard takes ~100 ms at 1,000 steps), and parsed
step headers, keyed by step and wall time (a rewritten step has a new one).
"""

import collections
import concurrent.futures
import contextlib
import logging
import os
import threading

import numpy as np

from tensorboard import errors
from tensorboard.compat import tf
from tensorboard.data import provider

from tensorboard_rnn_units import metadata

logger = logging.getLogger(__name__)

# With RustBoard each read_blob is a gRPC call of a few milliseconds, mostly
# waiting; overlapping them makes reading many steps ~5x faster.
_POOL = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="rnn_units_read")
_MAX_HEADERS = 50_000

# A parsed step header and, for version 2, where its arrays lie.
Step = collections.namedtuple("Step", ["header", "layout"])


class StepReader:
    """Steps of the plugin's tags, read through ``data_provider`` and files under ``logdir``."""

    def __init__(self, data_provider, logdir, downsample):
        self._provider = data_provider
        self._logdir = logdir
        self._downsample = downsample
        self._lock = threading.Lock()
        self._series = {}  # (experiment, run, tag) -> (listing key, data ascending by step)
        self._steps = collections.OrderedDict()  # (experiment, run, tag, step, wall time) -> Step
        self._warned_unreadable = False
        self._warned_steps = set()  # unreadable latest steps already logged

    def tags(self, ctx, experiment):
        """``{run: {tag: step data ascending by step}}`` of every tag whose metadata is readable."""
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME
        )
        return self._data(ctx, experiment, listing)

    def unreadable(self, ctx, experiment):
        """``[{"run", "tag", "reason"}]`` of the tags whose metadata this package cannot read."""
        listing = self._provider.list_blob_sequences(
            ctx, experiment_id=experiment, plugin_name=metadata.PLUGIN_NAME
        )
        problems = []
        for run, tags in sorted(listing.items()):
            for tag, series in sorted(tags.items()):
                try:
                    metadata.parse_plugin_metadata(series.plugin_content)
                except ValueError as e:
                    problems.append({"run": run, "tag": tag, "reason": str(e)})
        return problems

    def series(self, ctx, experiment, run, tag):
        """Step data of ``run``/``tag`` ascending by step; 404 if it has no readable tag."""
        listing = self._provider.list_blob_sequences(
            ctx,
            experiment_id=experiment,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]),
        )
        data = self._data(ctx, experiment, listing).get(run, {}).get(tag)
        if data is None:
            raise errors.NotFoundError(f"no {metadata.PLUGIN_NAME} data for run {run!r}, tag {tag!r}")
        return data

    def try_each(self, function, data, failures):
        """``function(datum)`` of each datum, concurrently, in order; a datum
        whose step is unreadable (a 404) gives ``None`` and its reason in
        ``failures[step]``."""

        def attempt(datum):
            try:
                return function(datum)
            except errors.NotFoundError as e:
                failures[datum.step] = str(e)
                return None

        return _map(attempt, data)

    def datum(self, ctx, experiment, run, tag, step):
        """The datum of ``step`` of ``run``/``tag``; 404 if there is none."""
        datum = next((d for d in self.series(ctx, experiment, run, tag) if d.step == step), None)
        if datum is None:
            raise errors.NotFoundError(f"no step {step} in run {run!r}, tag {tag!r}")
        return datum

    def steps(self, ctx, experiment, run, tag, data):
        """The ``Step`` of each datum, read concurrently where not cached."""
        return _map(lambda datum: self.step(ctx, experiment, run, tag, datum), data)

    def step(self, ctx, experiment, run, tag, datum):
        """The parsed header of a step (one small read the first time)."""
        key = (experiment, run, tag, datum.step, datum.wall_time)
        with self._lock:
            cached = self._steps.get(key)
        if cached is not None:
            return cached
        with _readable(run, tag, datum):
            if not datum.values:
                raise ValueError("no blobs")
            header = metadata.decode_header(self._provider.read_blob(ctx, blob_key=datum.values[0].blob_key))
            step = Step(header, metadata.StepLayout(header) if header["version"] >= 2 else None)
        with self._lock:
            self._steps[key] = step
            while len(self._steps) > _MAX_HEADERS:
                self._steps.popitem(last=False)
        return step

    def latest_readable(self, ctx, experiment, run, tag, data):
        """The ``Step`` of the latest datum whose header reads, or ``None``
        (one broken step must not hide a tag)."""
        for datum in reversed(data):
            try:
                return self.step(ctx, experiment, run, tag, datum)
            except errors.NotFoundError as e:
                key = (experiment, run, tag, datum.step, datum.wall_time)
                if key not in self._warned_steps:  # /tags is polled: say it once
                    self._warned_steps.add(key)
                    logger.warning("%s", e)
        return None

    def read(self, ctx, experiment, run, tag, datum, start, stop, names=None):
        """``(header, {name: (array, axes)})`` of a step, its per-unit arrays cut
        to units ``start..stop-1`` (``0 <= start < stop <= units``).

        Reads only what is asked for: the arrays in ``names``, or by default
        every array but ``metadata.ANALYSIS_ARRAYS`` (what the pictures need).
        """
        step = self.step(ctx, experiment, run, tag, datum)
        undrawn = (*metadata.ANALYSIS_ARRAYS, metadata.PROBE_ARRAY)
        wanted = (lambda n: n not in undrawn) if names is None else (lambda n: n in names)
        with _readable(run, tag, datum):
            if step.layout is None:
                blobs = [self._provider.read_blob(ctx, blob_key=b.blob_key) for b in datum.values]
                arrays = metadata.decode_v1_step(step.header, blobs)
            else:
                layout = step.layout
                whole = [n for n in layout.whole if wanted(n)]
                records = any(wanted(s["name"]) for s in layout.per_unit)
                if step.header["file"] is None:
                    arrays = self._read_inline(ctx, datum, layout, start, stop, whole, records, names)
                else:
                    arrays = self._read_file(run, tag, datum, step, start, stop, whole, records, names)
        return step.header, {
            name: (_cut(array, axes, start, stop), axes) for name, (array, axes) in arrays.items()
            if wanted(name)
        }

    def probe_sequences(self, ctx, experiment, run, tag, datum, sequences):
        """``(axes, [array of each of ``sequences``])``: rows of the probe data a
        step's exemplars index (its file, or its inline ``probe_data``); 404
        when the step has none (logged before 1.1) or it cannot be read."""
        step = self.step(ctx, experiment, run, tag, datum)
        spec = step.header.get("probe")
        if spec is None:
            raise errors.NotFoundError(
                f"step {datum.step} of run {run!r}, tag {tag!r} has no probe data (logged before "
                "tensorboard-rnn-units 1.1): no exemplars to show"
            )
        shape, axes = spec["shape"], spec["axes"]
        if any(not 0 <= n < shape[0] for n in sequences):
            raise errors.NotFoundError(f"step {datum.step} of run {run!r}, tag {tag!r}: exemplar outside its probe")
        if spec["file"] is None:
            _, arrays = self.read(ctx, experiment, run, tag, datum, 0, step.header["units"], [metadata.PROBE_ARRAY])
            data = arrays[metadata.PROBE_ARRAY][0]
            return axes, [np.array(data[n]) for n in sequences]
        path = os.path.join(self._logdir or "", run, *metadata.PLUGIN_DIR, spec["file"])
        try:
            parts = _read_ranges(path, [metadata.probe_row_range(spec, n) for n in sequences])
        except (OSError, tf.errors.NotFoundError):
            raise errors.NotFoundError(
                f"step {datum.step} of run {run!r}, tag {tag!r}: its probe file {path} is missing or unreadable"
            ) from None
        with _readable(run, tag, datum):  # a short file
            return axes, [metadata.decode_probe_row(spec, part) for part in parts]

    def _read_inline(self, ctx, datum, layout, start, stop, whole, records, names):
        if len(datum.values) != 2 + layout.num_chunks:
            raise ValueError(f"{len(datum.values)} blobs, expected {2 + layout.num_chunks}")
        read = lambda i: self._provider.read_blob(ctx, blob_key=datum.values[i].blob_key)
        arrays = {}
        if whole:
            shared = read(1)
            arrays.update((n, layout.decode_whole(n, shared[o : o + k]))
                          for n, (o, k) in ((n, layout.whole_range(n)) for n in whole))
        if records:
            chunks = layout.chunks(start, stop)
            data = b"".join(read(2 + k) for k in chunks)
            first = (start - chunks.start * layout.chunk_units) * layout.record.itemsize
            arrays.update(layout.decode_units(data[first : first + (stop - start) * layout.record.itemsize], start, stop, names))
        return arrays

    def _read_file(self, run, tag, datum, step, start, stop, whole, records, names):
        if not self._logdir:
            raise errors.NotFoundError(
                f"step {datum.step} of run {run!r}, tag {tag!r} keeps its data in the run's folder, "
                "which TensorBoard's --logdir locates; start TensorBoard with --logdir"
            )
        path = os.path.join(self._logdir, run, *metadata.PLUGIN_DIR, step.header["file"])
        layout = step.layout
        ranges = [layout.whole_range(n) for n in whole] + ([layout.record_range(start, stop)] if records else [])
        try:
            parts = _read_ranges(path, ranges)
        except (OSError, tf.errors.NotFoundError):
            raise errors.NotFoundError(
                f"step {datum.step} of run {run!r}, tag {tag!r}: its data file {path} is missing or "
                "unreadable (copy a run's plugins/rnn_units/ folder along with its event files)"
            ) from None
        arrays = {n: layout.decode_whole(n, part) for n, part in zip(whole, parts)}
        if records:
            arrays.update(layout.decode_units(parts[-1], start, stop, names))
        return arrays

    def _data(self, ctx, experiment, listing):
        """Step data of every readable tag in ``listing``, reading only those that changed."""
        result, stale = {}, []
        with self._lock:
            for run, tags in listing.items():
                for tag, series in tags.items():
                    if self._parse(run, tag, series.plugin_content) is None:
                        continue
                    key = (series.max_step, series.max_wall_time, series.max_length)
                    cached = self._series.get((experiment, run, tag))
                    if cached is not None and cached[0] == key:
                        result.setdefault(run, {})[tag] = cached[1]
                    else:
                        stale.append((run, tag, key))
        if stale:
            read = self._provider.read_blob_sequences(
                ctx,
                experiment_id=experiment,
                plugin_name=metadata.PLUGIN_NAME,
                downsample=self._downsample,
                run_tag_filter=provider.RunTagFilter(
                    runs={run for run, _, _ in stale}, tags={tag for _, tag, _ in stale}
                ),
            )
            with self._lock:
                for run, tag, key in stale:
                    data = sorted(read.get(run, {}).get(tag, ()), key=lambda datum: datum.step)
                    self._series[(experiment, run, tag)] = (key, data)
                    result.setdefault(run, {})[tag] = data
        return result

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


def _map(function, items):
    """``[function(item) for item in items]``, in a few concurrent batches.

    Batches, not one task per item: at 1,000 steps the pool's bookkeeping
    per task would cost more than the reads it overlaps.
    """
    items = list(items)
    size = -(-len(items) // _POOL._max_workers) or 1
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    return [result for batch in _POOL.map(lambda b: [function(item) for item in b], batches) for result in batch]


def _read_ranges(path, ranges):
    """The bytes of each ``(offset, nbytes)`` of the file at ``path``, through ``gfile``."""
    if "://" in path:
        return [_read_range(path, offset, nbytes) for offset, nbytes in ranges]
    parts = []
    with open(path, "rb") as f:  # a local file: one open for all ranges
        for offset, nbytes in ranges:
            f.seek(offset)
            parts.append(f.read(nbytes))
    return parts


def _read_range(path, offset, nbytes):
    """``nbytes`` bytes of the file at ``path`` from ``offset``, through ``gfile``."""
    if nbytes == 0:
        return b""
    with tf.io.gfile.GFile(path, "rb") as f:
        if hasattr(f, "seek"):  # TensorFlow's gfile
            f.seek(offset)
            return f.read(nbytes)
    # TensorBoard's own gfile cannot seek, but its file systems read from an
    # offset: "opaque_offset" for local and fsspec paths, "byte_offset" for S3.
    continue_from = {"opaque_offset": offset, "byte_offset": offset}
    data, _ = tf.io.gfile.get_filesystem(path).read(path, True, nbytes, continue_from)
    return data[:nbytes]


@contextlib.contextmanager
def _readable(run, tag, datum):
    """Turns a step's format error (``ValueError``) into a 404 naming the step."""
    try:
        yield
    except ValueError as e:
        raise errors.NotFoundError(
            f"step {datum.step} of run {run!r}, tag {tag!r} is unreadable: {e}"
        ) from None


def _cut(array, axes, start, stop):
    """``array`` with its unit axis, if any, cut to ``start..stop-1`` (a no-op on records already cut)."""
    if metadata.UNIT not in axes:
        return array
    axis = axes.index(metadata.UNIT)
    if array.shape[axis] == stop - start:
        return array
    return np.take(array, range(start, stop), axis=axis)


def take_unit(arrays, index):
    """``{name: (array, axes)}`` with each per-unit array taken at row ``index``
    of its unit axis (that axis dropped)."""
    taken = {}
    for name, (array, axes) in arrays.items():
        if metadata.UNIT in axes:
            axis = axes.index(metadata.UNIT)
            array, axes = np.take(array, index, axis=axis), axes[:axis] + axes[axis + 1 :]
        taken[name] = (array, axes)
    return taken
