"""Comparisons of units across steps and runs, for the plugin's routes.

Reads per-unit rows through ``reader.StepReader``, computes with
``analysis`` and caches what it read and computed, keyed by step and wall
time (so a growing run only adds work for its new steps). Returns plain data.
"""

import collections
import threading

import numpy as np

from tensorboard import errors

from tensorboard_rnn_units import analysis
from tensorboard_rnn_units import metadata

SAMPLE = "activation_sample"
# The layer-similarity heatmap shows at most this many steps, evenly spaced.
MAX_SIMILARITY_STEPS = 100
# A unit has settled once its change from step to step stays below this.
DEFAULT_THRESHOLD = 0.1
# Matched pairs less correlated than this are "no good match".
MATCH_THRESHOLD = 0.5
_CACHE_BYTES = 256 * 2**20


class Comparisons:
    """Change scores, drift, layer similarity, matching and orders of one plugin's data."""

    def __init__(self, reader):
        self._reader = reader
        # Rows read are large and streamed through; results are small and
        # reused: separate budgets, so reading never evicts a result.
        self._rows_cache = _BytesCache(_CACHE_BYTES)
        self._results = _BytesCache(_CACHE_BYTES)

    def change(self, ctx, experiment, run, tag, step_a, step_b):
        """Each unit's change from ``step_a`` to ``step_b``: on the activation
        sample (``None`` where a step lacks it) and on each weighting's
        average window and rollout."""
        a, b = (self._reader.datum(ctx, experiment, run, tag, s) for s in (step_a, step_b))
        units_a, units_b = (self._units(ctx, experiment, run, tag, d) for d in (a, b))
        if units_a != units_b:
            raise errors.InvalidArgumentError(
                f"steps {step_a} and {step_b} of run {run!r}, tag {tag!r} have {units_a} and {units_b} "
                "units: a unit's change needs the same layer at both steps"
            )
        rows = lambda datum, name: self._rows(ctx, experiment, run, tag, datum, name)
        sample_a, sample_b = rows(a, SAMPLE), rows(b, SAMPLE)
        activation = None
        if sample_a is not None and sample_b is not None:
            activation = _floats(self._memo(("change", experiment, run, tag, _id(a), _id(b)),
                                            lambda: analysis.change(sample_a, sample_b)))
        average = {}
        for weighting in metadata.WEIGHTINGS:
            pictures = [rows(d, f"{weighting}/average") for d in (a, b)]
            if all(p is not None for p in pictures):
                rollouts = [rows(d, f"{weighting}/rollout") for d in (a, b)]
                if all(r is not None for r in rollouts):
                    pictures = [np.concatenate([p, r], axis=1) for p, r in zip(pictures, rollouts)]
                average[weighting] = _floats(analysis.change(*pictures))
        return {"units": units_a, "step_a": step_a, "step_b": step_b, "activation": activation,
                "average": average, "missing": [] if activation is not None else [SAMPLE]}

    def drift(self, ctx, experiment, run, tag, threshold=DEFAULT_THRESHOLD):
        """``(header, arrays)``: each unit's change at each served step from
        the step logged before it (``previous_steps``; the step served before
        it unless TensorBoard sampled steps out).

        Steps without an activation sample, or with another unit count than
        the latest, are left out and listed in ``skipped_steps``.
        """
        data, units, skipped = self._sampled_steps(ctx, experiment, run, tag)
        changes = [
            self._memo(("drift", experiment, run, tag, _id(a), _id(b)),
                       lambda a=a, b=b: self._change(ctx, experiment, run, tag, a, b))
            for a, b in zip(data, data[1:])
        ]
        matrix = np.asarray(changes, np.float32).reshape(len(changes), units)
        settled = analysis.settled(matrix, threshold)
        previous = [self._reader.step(ctx, experiment, run, tag, b).header.get("previous_step", a.step)
                    for a, b in zip(data, data[1:])]
        header = {
            "steps": [d.step for d in data],
            "previous_steps": previous,
            "units": units,
            "threshold": threshold,
            "settled": [None if i < 0 else data[i].step for i in settled.tolist()],
            "skipped_steps": skipped,
        }
        return header, {"change": (matrix, ["transition", "unit"])}

    def similarity(self, ctx, experiment, run, tag):
        """``(header, arrays)``: linear CKA between every pair of (at most
        ``MAX_SIMILARITY_STEPS``, evenly spaced) logged steps."""
        data, _, skipped = self._sampled_steps(ctx, experiment, run, tag)
        keep = np.unique(np.linspace(0, len(data) - 1, min(len(data), MAX_SIMILARITY_STEPS)).round().astype(int))
        grams = [
            self._memo(("gram", experiment, run, tag, _id(data[i])), lambda i=i: self._gram(ctx, experiment, run, tag, data[i]))
            for i in keep
        ]
        header = {"steps": [data[i].step for i in keep], "skipped_steps": skipped, "of_steps": len(data)}
        return header, {"cka": (analysis.cka_matrix(grams).astype(np.float32), ["step", "other_step"])}

    def match(self, ctx, experiment, run, tag, step, other_run, other_step):
        """Units of ``run`` at ``step`` matched one-to-one to those of ``other_run`` at ``other_step``.

        Raises:
          InvalidArgumentError: the runs were logged on different probes.
          NotFoundError: a step lacks the activation sample.
        """
        a = self._reader.datum(ctx, experiment, run, tag, step)
        b = self._reader.datum(ctx, experiment, other_run, tag, other_step)
        fingerprints = [self._reader.step(ctx, experiment, r, tag, d).header.get("probe_fingerprint")
                        for r, d in ((run, a), (other_run, b))]
        if None in fingerprints:
            raise errors.InvalidArgumentError(
                "a step logged without a probe fingerprint (format version 1) cannot be matched: "
                "nothing says its windows are the other run's"
            )
        if fingerprints[0] != fingerprints[1]:
            raise errors.InvalidArgumentError(
                f"runs {run!r} and {other_run!r} were logged on different probes (fingerprints "
                f"{fingerprints[0]} and {fingerprints[1]}): their units saw different windows, so they "
                "cannot be compared; log both runs with the same Probe"
            )
        sample_a = self._sample(ctx, experiment, run, tag, a)
        sample_b = self._sample(ctx, experiment, other_run, tag, b)
        assignment, similarity = analysis.match(sample_a, sample_b)
        return {
            "assignment": assignment.tolist(),
            "similarity": _floats(similarity),
            "cka": analysis.linear_cka(sample_a, sample_b),
            "threshold": MATCH_THRESHOLD,
        }

    def coverage(self, ctx, experiment, run, tag, weighting):
        """``(header, arrays)``: how many units prefer each class (largest
        mean weight under ``weighting``) at each logged step that has labels."""
        data = self._reader.series(ctx, experiment, run, tag)
        rows = [(d, self._units_per_class(ctx, experiment, run, tag, d, weighting)) for d in data]
        rows = [(d, r) for d, r in rows if r is not None]
        if not rows:
            raise errors.NotFoundError(
                f"run {run!r}, tag {tag!r} has no {weighting} class weights: log a Probe with labels"
            )
        classes = max(len(r) for _, r in rows)
        counts = np.stack([np.pad(r, (0, classes - len(r))) for _, r in rows]).astype(np.float32)
        names = self._reader.step(ctx, experiment, run, tag, rows[-1][0]).header["class_names"]
        header = {"steps": [d.step for d, _ in rows], "class_names": names, "weighting": weighting}
        return header, {"units_per_class": (counts, ["step", "class"])}

    def order(self, ctx, experiment, run, tag, step):
        """Unit orders computed from many values per unit: ``similarity``
        (neighbours alike, on the activation sample, else the top average)."""
        datum = self._reader.datum(ctx, experiment, run, tag, step)
        for name in (SAMPLE, "top/average", "relu/average"):
            rows = self._rows(ctx, experiment, run, tag, datum, name)
            if rows is not None:
                return {"similarity": analysis.similarity_order(rows).tolist(), "from": name}
        raise errors.NotFoundError(f"step {step} of run {run!r}, tag {tag!r} has nothing to order units by")

    # Reading.

    def _sampled_steps(self, ctx, experiment, run, tag):
        """``(steps, units, skipped)``: the data of the steps of a tag whose
        header lists an activation sample, with the latest such step's unit
        count, and the step numbers left out. Reads headers only."""
        data = self._reader.series(ctx, experiment, run, tag)
        headers = [step.header for step in self._reader.steps(ctx, experiment, run, tag, data)]
        units = next((h["units"] for h in reversed(headers) if _has(h, SAMPLE)), None)
        if units is None:
            raise errors.NotFoundError(
                f"run {run!r}, tag {tag!r} has no step with an activation sample (logged by an older "
                "tensorboard_rnn_units); log new steps to compare them"
            )
        kept = [_has(h, SAMPLE) and h["units"] == units for h in headers]
        return ([d for d, k in zip(data, kept) if k], units, [d.step for d, k in zip(data, kept) if not k])

    def _sample(self, ctx, experiment, run, tag, datum):
        rows = self._rows(ctx, experiment, run, tag, datum, SAMPLE)
        if rows is None:
            raise errors.NotFoundError(
                f"step {datum.step} of run {run!r}, tag {tag!r} has no activation sample "
                "(logged by an older tensorboard_rnn_units)"
            )
        return rows

    def _change(self, ctx, experiment, run, tag, a, b):
        """Each unit's change at step ``b`` from the step logged before it: as
        the writer logged it with ``b`` (since its ``previous_step``, which is
        ``a`` unless TensorBoard sampled steps out), else from ``a``'s and
        ``b``'s samples."""
        logged = self._rows(ctx, experiment, run, tag, b, "activation_change")
        if logged is not None:
            return logged[:, 0]
        return analysis.change(self._sample(ctx, experiment, run, tag, a), self._sample(ctx, experiment, run, tag, b))

    def _gram(self, ctx, experiment, run, tag, datum):
        """The step's ``sample_gram``, as logged or from its sample (float32)."""
        if _has(self._reader.step(ctx, experiment, run, tag, datum).header, "sample_gram"):
            _, arrays = self._reader.read(ctx, experiment, run, tag, datum, 0, 1, {"sample_gram"})
            return arrays["sample_gram"][0].astype(np.float32)
        return analysis.gram(self._sample(ctx, experiment, run, tag, datum)).astype(np.float32)

    def _units_per_class(self, ctx, experiment, run, tag, datum, weighting):
        """``(C,)`` units preferring each class at a step, as logged or from its class weights; ``None`` without."""
        name = f"{weighting}/units_per_class"
        if _has(self._reader.step(ctx, experiment, run, tag, datum).header, name):
            _, arrays = self._reader.read(ctx, experiment, run, tag, datum, 0, 1, {name})
            return arrays[name][0]
        class_weight = self._rows(ctx, experiment, run, tag, datum, f"{weighting}/class_weight")
        return None if class_weight is None else analysis.units_per_class(class_weight)

    def _units(self, ctx, experiment, run, tag, datum):
        return self._reader.step(ctx, experiment, run, tag, datum).header["units"]

    def _rows(self, ctx, experiment, run, tag, datum, name):
        """``(H, values)`` float32 of a per-unit array of a step, or ``None`` if it lacks it."""

        def read():
            step = self._reader.step(ctx, experiment, run, tag, datum)
            if not _has(step.header, name):
                return None
            _, arrays = self._reader.read(ctx, experiment, run, tag, datum, 0, step.header["units"], {name})
            array, axes = arrays[name]
            if metadata.UNIT not in axes:
                return None
            array = np.moveaxis(array, axes.index(metadata.UNIT), 0)
            return np.ascontiguousarray(array.reshape(len(array), -1), dtype=np.float32)

        return _memo(self._rows_cache, (experiment, run, tag, _id(datum), name), read)

    def _memo(self, key, compute):
        return _memo(self._results, key, compute)


class _BytesCache:
    """Least recently used values (numpy arrays or ``None``) within a byte budget."""

    def __init__(self, budget):
        self._budget = budget
        self._bytes = 0
        self._items = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key not in self._items:
                return False, None
            self._items.move_to_end(key)
            return True, self._items[key]

    def put(self, key, value):
        size = getattr(value, "nbytes", 0)
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self._budget and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= getattr(old, "nbytes", 0)


def _memo(cache, key, compute):
    found, value = cache.get(key)
    if not found:
        value = compute()
        cache.put(key, value)
    return value


def _has(header, name):
    """Whether a step's header lists the array ``name``."""
    return any(spec["name"] == name for spec in header["arrays"])


def _id(datum):
    return datum.step, datum.wall_time


def _floats(values):
    """A JSON list of floats, ``None`` for NaN."""
    return [None if np.isnan(v) else float(v) for v in np.asarray(values, np.float64).tolist()]
