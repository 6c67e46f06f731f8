"""The rnn_units summary format: the one place that knows it.

Version 2 (written today)
-------------------------
A tag's ``SummaryMetadata`` plugin content is UTF-8 JSON holding its
*layout*, what cannot change for the tag: ``LAYOUT_KEYS`` plus ``version``.
``data_class`` is ``DATA_CLASS_BLOB_SEQUENCE`` (TensorBoard's fast loader
drops third-party data without it).

One logged step is a blob sequence whose blob 0 is the step *header*, UTF-8
JSON: the layout again (so each step describes itself), the step's
``weightings`` and ``top_fraction``, and

- ``arrays``: ``[{"name", "dtype", "shape", "axes"[, "chunked"]}, ...]``;
  ``axes`` names every dimension (today ``unit``, ``window``, ``rollout``,
  ``input``, ``end_position``, ``class``, ``sample``, ``other_sample``).
  Arrays with a ``"unit"`` axis are *per-unit* and live in the unit records,
  unless ``"chunked": false`` keeps them *whole*, like the arrays without a
  unit axis: what analyses read for every unit at once (the activation
  sample) is then one read, and a unit's detail never reads it. Readers
  find the unit axis from ``axes`` and ignore arrays whose names they don't
  know, so new optional arrays need no new version.
- ``chunk_units``: ``C``, how many units one chunk holds.
- ``file``: ``null`` when the data is inline, else the name of the step's
  data file in the run's ``plugins/rnn_units/`` folder.
- ``probe`` (optional): ``{"file", "dtype", "shape", "axes"}`` of the probe's
  own data, which exemplars index: int32 tokens ``(sequence, time)`` or
  float sequences ``(sequence, time, input)``. ``file`` names a file in the
  same folder holding just that array (``probe-<fingerprint>.rnnu``, written
  once per run and probe); ``null`` means it is the step's whole array
  ``probe_data``.

Layout keys added in 1.1 (``null`` or absent in older logs): ``vocab`` (the
tokens' strings, display ``tokens``), ``channel_names`` (display
``series``), ``annotation_names`` and ``gate_names`` (the ``annotation`` and
``gate`` axes).

The data is the *shared part* followed by one fixed-size *record* per unit.
The shared part holds the whole arrays back to back in ``arrays`` order,
each at a multiple of 8 bytes, padded to a multiple of 8. A unit's record
holds its slice of every per-unit array (the array without its unit axis)
in ``arrays`` order, each aligned to its item size, padded to a multiple of
8 (``StepLayout.record``). Chunk ``k`` is the records of units
``k*C .. min((k+1)*C, H) - 1``. Inline, the blob sequence is
``[header, shared, chunk 0, chunk 1, ...]``; with a file, it is
``[header]`` and the file is the shared part then every record, so any unit
range is one contiguous read. Everything is little-endian, C order.

Version 1 (still read)
----------------------
Two blobs, ``[header, data]``; the header's ``arrays`` give each array's
``offset`` and ``nbytes`` in the data blob; no axes (``V1_AXES`` supplies
them) and no probe fingerprint.

Arrays (both versions); per weighting ``w`` in ``weightings``:

==============================  ===========================  =====================================
name                            axes                         meaning
==============================  ===========================  =====================================
``mean_window``                 window, input                plain mean of all probe windows
``mean_rollout``                rollout, input               plain mean of all rollouts (R > 0)
``signal_mean``                 unit                         mean signal over windows
``signal_max``                  unit                         max signal over windows
``activation_sample``           unit, sample (whole)         signal on the probe's activation
                                                             sample (optional, as the next three)
``activation_change``           unit (whole)                 1 - correlation of each unit's
                                                             activation sample with the
                                                             header's ``previous_step``'s
``sample_gram``                 sample, other_sample         centred Gram matrix of the
                                                             activation sample, unit norm (CKA;
                                                             when units > sample, else computed
                                                             from the sample by readers)
``{w}/units_per_class``         class                        units whose largest mean weight is
                                                             on that class (with labels)
``class_counts``                class                        windows per class (with labels)
``{w}/average``                 unit, window, input          weighted-average window
``{w}/rollout``                 unit, rollout, input         weighted-average rollout (R > 0)
``{w}/active_fraction``         unit                         fraction of windows with w > 0
``{w}/effective_sample_size``   unit                         (sum w)^2 / (sum w^2 * n)
``{w}/position_share``          unit, end_position           share of weight per end position
``{w}/class_weight``            unit, class                  mean weight per class (labels)
``{w}/dead``                    unit                         1 where all weights are zero
``{w}/exemplar_sequence``       unit, exemplar               probe sequence of the unit's k best
                                                             windows under ``w``, best first (int32)
``{w}/exemplar_end``            unit, exemplar               their end ``e`` (inputs ``e-L..e-1``)
``{w}/exemplar_signal``         unit, exemplar               the unit's signal there
``annotation_correlation``      unit, annotation             correlation of the signal with each
                                                             annotation at the window's last step
``gate_saturation``             unit, gate                   fraction of windows with the gate
                                                             below 0.1 or above 0.9 (LSTM, GRU)
``time_constant``               unit                         -1 / log(mean keep gate), in steps
==============================  ===========================  =====================================

Large arrays are float16 (float32 where a value would overflow float16),
statistics float32, ``dead`` uint8, indices int32. For ``tokens`` the
``input`` axis is the vocabulary: averages are distributions over it.
"""

import json
import math
import re

import numpy as np

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "rnn_units"

# Bump when readers of the old format could misread the new one.
VERSION = 2

DTYPES = ("float16", "float32", "uint8", "int32")

DISPLAYS = ("image_rows", "series", "tokens")

WEIGHTINGS = ("top", "relu", "bottom")

# What cannot change for a tag (sizes first: each a non-negative integer).
SIZE_KEYS = ("units", "window", "rollout", "input_size", "positions")
LAYOUT_KEYS = SIZE_KEYS + (
    "display", "class_names", "signal", "layer", "context", "num_windows", "probe_fingerprint",
    "vocab", "channel_names", "annotation_names", "gate_names",
)

# The folder of a run that holds its steps' data files.
PLUGIN_DIR = ("plugins", PLUGIN_NAME)

UNIT = "unit"

# What only the comparisons read: a step's pictures (/features, /unit) leave them out.
ANALYSIS_ARRAYS = ("activation_sample", "activation_change", "sample_gram")

# The inline probe data (see ``probe`` in the header), read only for exemplars.
PROBE_ARRAY = "probe_data"
PROBE_AXES = (["sequence", "time"], ["sequence", "time", "input"])

# Inline chunks hold about this many bytes: one unit's detail reads one chunk a step.
CHUNK_BYTES = 64 * 1024

# The name of a step's data file in <run>/plugins/rnn_units/: no separators, no "..".
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def create_summary_metadata(layout, display_name="", summary_description=""):
    """Returns the ``SummaryMetadata`` of a tag with this ``layout`` (``LAYOUT_KEYS``)."""
    content = {key: layout.get(key) for key in LAYOUT_KEYS}
    content["version"] = VERSION
    return summary_pb2.SummaryMetadata(
        display_name=display_name,
        summary_description=summary_description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=encode_json(content),
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def parse_plugin_metadata(content):
    """Parses plugin content bytes (version 1 or 2) into the tag's description dict.

    Raises:
      ValueError: not a JSON object with an integer ``version``, a version
        newer than this package understands, or a missing size.
    """
    description = _parse_json_object(content, "plugin content")
    _check_sizes(description, "plugin content")
    return description


def describe(header):
    """The description of a step (its layout, ``weightings``, ``top_fraction``,
    ``version``) from a parsed header of either version."""
    description = {key: header.get(key) for key in LAYOUT_KEYS}
    for key in ("version", "weightings", "top_fraction"):
        description[key] = header.get(key)
    return description


def encode_json(value):
    return json.dumps(value, sort_keys=True).encode("utf-8")


def encode_step(description, arrays, chunk_bytes=CHUNK_BYTES):
    """Encodes one step (see the module docstring).

    Args:
      description: the step's layout, ``weightings`` and ``top_fraction``.
      arrays: ordered mapping of name to ``(numpy array, axes)`` or
        ``(numpy array, axes, chunked)``, dtypes in ``DTYPES``; per-unit
        arrays have ``units`` along their unit axis; ``chunked`` False keeps
        a per-unit array whole.

    Returns:
      ``(header, shared, chunks)``: the header dict (``file`` None), the
      shared part's bytes and each chunk's bytes.

    Raises:
      ValueError: an array with another dtype, wrong axes or unit count.
    """
    specs, values = [], {}
    for name, (array, axes, *chunked) in arrays.items():
        array = np.asarray(array)
        spec = {"name": name, "dtype": array.dtype.name, "shape": list(array.shape), "axes": list(axes)}
        if chunked == [False]:
            spec["chunked"] = False
        _check_spec(spec, description["units"], f"array {name!r}")
        specs.append(spec)
        values[name] = array
    header = dict(description, version=VERSION, arrays=specs, file=None, chunk_units=1)
    layout = StepLayout(header)
    header["chunk_units"] = layout.chunk_units = max(1, chunk_bytes // layout.record.itemsize)
    shared, _ = pack_arrays({name: values[name] for name in layout.whole}, pad_end=True)
    records = np.zeros(layout.units, dtype=layout.record)
    for spec in layout.per_unit:
        records[spec["name"]] = np.moveaxis(values[spec["name"]], spec["axes"].index(UNIT), 0)
    chunks = [records[a : a + layout.chunk_units].tobytes() for a in range(0, layout.units, layout.chunk_units)]
    return header, shared, chunks


class StepLayout:
    """Where each array of a version-2 step lies, from its header alone."""

    def __init__(self, header):
        self.units = header["units"]
        self.chunk_units = header["chunk_units"]
        in_records = lambda s: UNIT in s["axes"] and s.get("chunked", True)
        self.per_unit = [s for s in header["arrays"] if in_records(s)]
        shared = [s for s in header["arrays"] if not in_records(s)]
        nbytes = [_nbytes(s["dtype"], s["shape"]) for s in shared]
        offsets = _aligned_offsets(nbytes, [8] * len(nbytes))
        # name -> (spec, offset in the shared part, nbytes)
        self.whole = {s["name"]: (s, o, n) for s, o, n in zip(shared, offsets, nbytes)}
        self.shared_nbytes = _round_up(offsets[-1] + nbytes[-1], 8) if nbytes else 0
        self.record = _record_dtype(self.per_unit)

    @property
    def num_chunks(self):
        return -(-self.units // self.chunk_units)

    def chunks(self, start, stop):
        """Indices of the chunks holding units ``start..stop-1``."""
        return range(start // self.chunk_units, -(-stop // self.chunk_units))

    def record_range(self, start, stop):
        """``(offset, nbytes)`` of the records of units ``start..stop-1`` in a data file."""
        size = self.record.itemsize
        return self.shared_nbytes + start * size, (stop - start) * size

    def whole_range(self, name):
        """``(offset, nbytes)`` of whole array ``name`` in the shared part (and so in a data file)."""
        _, offset, nbytes = self.whole[name]
        return offset, nbytes

    def decode_whole(self, name, data):
        """``(array, axes)`` of whole array ``name`` from exactly its bytes."""
        spec, _, nbytes = self.whole[name]
        if len(data) != nbytes:
            raise ValueError(f"array {name!r} has {len(data)} bytes, expected {nbytes}")
        return _view(data, spec["dtype"], spec["shape"], 0), spec["axes"]

    def decode_units(self, data, start, stop, names=None):
        """``{name: (array, axes)}`` of the per-unit arrays (those in ``names``
        if given) of units ``start..stop-1``, from exactly their records' bytes (copies)."""
        expected = (stop - start) * self.record.itemsize
        if len(data) != expected:
            raise ValueError(f"records of units {start}:{stop} have {len(data)} bytes, expected {expected}")
        records = np.frombuffer(data, dtype=self.record, count=stop - start)
        return {
            s["name"]: (np.ascontiguousarray(np.moveaxis(records[s["name"]], 0, s["axes"].index(UNIT))), s["axes"])
            for s in self.per_unit
            if names is None or s["name"] in names
        }


def decode_header(blob):
    """Parses blob 0 of a step (version 1 or 2) and checks it describes its arrays.

    Raises:
      ValueError: malformed JSON, a newer version, or bad array specs,
        ``chunk_units`` or ``file``.
    """
    header = _parse_json_object(blob, "step header")
    _check_sizes(header, "step header")
    specs = header.get("arrays")
    if not isinstance(specs, list):
        raise ValueError("step header: 'arrays' must be a list")
    if header["version"] == 1:
        for spec in specs:
            _check_v1_spec(spec)
        return header
    for spec in specs:
        _check_spec(spec, header["units"], "step header")
    chunk_units = header.get("chunk_units")
    if isinstance(chunk_units, bool) or not isinstance(chunk_units, int) or chunk_units < 1:
        raise ValueError(f"step header: 'chunk_units' must be a positive integer, got {chunk_units!r}")
    name = header.get("file")
    if name is not None and not (isinstance(name, str) and _FILE_NAME.fullmatch(name)):
        raise ValueError(f"step header: 'file' must be null or a plain file name, got {name!r}")
    probe = header.get("probe")
    if probe is not None:
        if not isinstance(probe, dict) or probe.get("axes") not in PROBE_AXES:
            raise ValueError(f"step header: malformed 'probe' {probe!r}")
        _check_spec(dict(probe, name=PROBE_ARRAY), header["units"], "step header 'probe'")
        if probe.get("file") is not None and not (isinstance(probe["file"], str) and _FILE_NAME.fullmatch(probe["file"])):
            raise ValueError(f"step header: the probe's 'file' must be null or a plain file name, got {probe['file']!r}")
    return header


def probe_spec(array, axes, file):
    """The header's ``probe`` entry for the probe's ``array`` stored in ``file`` (``None``: inline)."""
    return {"file": file, "dtype": array.dtype.name, "shape": list(array.shape), "axes": list(axes)}


def encode_probe(array):
    """The bytes of a probe file: ``array``, little-endian, C order."""
    data, _ = pack_arrays({PROBE_ARRAY: array})
    return data


def probe_row_range(spec, n):
    """``(offset, nbytes)`` of probe sequence ``n`` in the probe file ``spec`` (the header's ``probe``) names."""
    nbytes = _nbytes(spec["dtype"], spec["shape"][1:])
    return n * nbytes, nbytes


def decode_probe_row(spec, data):
    """Probe sequence ``(time[, input])`` from exactly its bytes in the probe file."""
    shape = spec["shape"][1:]
    if len(data) != _nbytes(spec["dtype"], shape):
        raise ValueError(f"a probe sequence has {len(data)} bytes, expected {_nbytes(spec['dtype'], shape)}")
    return _view(data, spec["dtype"], shape, 0)


# Axes of the version-1 arrays, which did not declare them.
V1_AXES = {
    "mean_window": ["window", "input"],
    "mean_rollout": ["rollout", "input"],
    "signal_mean": [UNIT],
    "signal_max": [UNIT],
    "class_counts": ["class"],
    "average": [UNIT, "window", "input"],
    "rollout": [UNIT, "rollout", "input"],
    "active_fraction": [UNIT],
    "effective_sample_size": [UNIT],
    "position_share": [UNIT, "end_position"],
    "class_weight": [UNIT, "class"],
    "dead": [UNIT],
}


def decode_v1_step(header, blobs):
    """``{name: (array, axes)}`` of a version-1 step: ``header`` parsed from
    ``blobs[0]``, the data in ``blobs[1]``; arrays of unknown names are skipped.

    Raises:
      ValueError: not two blobs, or an array outside the data blob or whose
        first axis is not the header's ``units`` where it should be.
    """
    if len(blobs) != 2:
        raise ValueError(f"version-1 step has {len(blobs)} blobs, expected 2 (header, data)")
    data = blobs[1]
    arrays = {}
    for spec in header["arrays"]:
        axes = V1_AXES.get(spec["name"].rsplit("/", 1)[-1])
        if axes is None or len(axes) != len(spec["shape"]):
            continue
        if spec["nbytes"] != _nbytes(spec["dtype"], spec["shape"]) or spec["offset"] + spec["nbytes"] > len(data):
            raise ValueError(
                f"array {spec['name']!r}: {spec['nbytes']} bytes at offset {spec['offset']} of a "
                f"{len(data)}-byte data blob, expected {_nbytes(spec['dtype'], spec['shape'])} "
                f"for {spec['dtype']} {spec['shape']}"
            )
        if axes[0] == UNIT and spec["shape"][0] != header["units"]:
            raise ValueError(
                f"array {spec['name']!r}: shape {spec['shape']} does not start with the "
                f"header's units ({header['units']})"
            )
        arrays[spec["name"]] = (_view(data, spec["dtype"], spec["shape"], spec["offset"]), axes)
    return arrays


def pack_arrays(arrays, pad_end=False):
    """Lays arrays out back to back, each at a multiple of 8 bytes.

    Args:
      arrays: ordered mapping of name to numpy array with a dtype in ``DTYPES``.
      pad_end: also pad the end to a multiple of 8.

    Returns:
      ``(data, specs)``: the little-endian, C-order bytes with zero padding
      between arrays, and ``[{"name", "dtype", "shape", "offset", "nbytes"}]``.

    Raises:
      ValueError: an array has another dtype.
    """
    specs, chunks = [], []
    arrays = {name: np.asarray(array) for name, array in arrays.items()}
    for name, array in arrays.items():
        if array.dtype.name not in DTYPES:
            raise ValueError(f"array {name!r}: dtype must be one of {DTYPES}, got {array.dtype}")
    sizes = [array.nbytes for array in arrays.values()]
    offsets = _aligned_offsets(sizes, [8] * len(sizes))
    end = 0
    for (name, array), offset in zip(arrays.items(), offsets):
        chunks += [bytes(offset - end), np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()]
        end = offset + array.nbytes
        specs.append({"name": name, "dtype": array.dtype.name, "shape": list(array.shape),
                      "offset": offset, "nbytes": array.nbytes})
    if pad_end:
        chunks.append(bytes(-end % 8))
    return b"".join(chunks), specs


def compact_float(array):
    """float16 where every finite value fits, else float32: no silent overflow."""
    array = np.asarray(array, dtype=np.float32)
    finite = array[np.isfinite(array)]
    if finite.size and np.abs(finite).max() > _FLOAT16_MAX:
        return array
    return array.astype(np.float16)


def _record_dtype(specs):
    """The structured dtype of one unit's record: each array's slice at its item size's alignment."""
    fields = []
    for spec in specs:
        axis = spec["axes"].index(UNIT)
        fields.append((np.dtype(spec["dtype"]).newbyteorder("<"), tuple(spec["shape"][:axis] + spec["shape"][axis + 1 :])))
    sizes = [dtype.itemsize * math.prod(shape) for dtype, shape in fields]
    offsets = _aligned_offsets(sizes, [dtype.itemsize for dtype, _ in fields])
    end = offsets[-1] + sizes[-1] if fields else 0
    return np.dtype({
        "names": [spec["name"] for spec in specs],
        "formats": fields,
        "offsets": offsets,
        "itemsize": max(8, _round_up(end, 8)),
    })


def _aligned_offsets(sizes, alignments):
    offsets, end = [], 0
    for size, alignment in zip(sizes, alignments):
        end = _round_up(end, alignment)
        offsets.append(end)
        end += size
    return offsets


def _round_up(n, multiple):
    return n + (-n % multiple)


def _nbytes(dtype, shape):
    return np.dtype(dtype).itemsize * math.prod(shape)


def _view(data, dtype, shape, offset):
    dtype = np.dtype(dtype).newbyteorder("<")
    return np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)


def _check_sizes(description, what):
    for key in SIZE_KEYS:
        value = description.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{what}: {key!r} must be a non-negative integer, got {value!r}")


def _check_spec(spec, units, what):
    """A version-2 array spec: known dtype, a shape with one named axis per
    dimension, and ``units`` along the unit axis if it has one."""
    if not (
        isinstance(spec, dict)
        and isinstance(spec.get("name"), str)
        and spec.get("dtype") in DTYPES
        and isinstance(spec.get("shape"), list)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in spec["shape"])
        and isinstance(spec.get("axes"), list)
        and len(spec["axes"]) == len(spec["shape"])
        and all(isinstance(a, str) for a in spec["axes"])
        and len(set(spec["axes"])) == len(spec["axes"])
    ):
        raise ValueError(f"{what}: malformed array spec {spec!r}")
    if spec.get("chunked", True) is not True and spec.get("chunked") is not False:
        raise ValueError(f"{what}: array {spec['name']!r}: 'chunked' must be true or false, got {spec['chunked']!r}")
    if UNIT in spec["axes"] and spec["shape"][spec["axes"].index(UNIT)] != units:
        raise ValueError(
            f"{what}: array {spec['name']!r} has shape {spec['shape']} with axes {spec['axes']}, "
            f"but the step has {units} units"
        )


def _check_v1_spec(spec):
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("name"), str)
        or spec.get("dtype") not in DTYPES
        or not isinstance(spec.get("shape"), list)
        or not all(isinstance(n, int) and n >= 0 for n in spec["shape"])
        or not all(isinstance(spec.get(k), int) and spec[k] >= 0 for k in ("offset", "nbytes"))
    ):
        raise ValueError(f"step header: malformed array spec {spec!r}")


def _parse_json_object(content, what):
    if isinstance(content, str):
        content = content.encode("utf-8")
    if not isinstance(content, (bytes, bytearray)):
        raise TypeError(f"{what}: expected bytes, got {type(content).__name__}")
    try:
        value = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what}: not UTF-8 JSON ({e})") from None
    if not isinstance(value, dict) or isinstance(value.get("version"), bool) or not isinstance(value.get("version"), int):
        raise ValueError(f"{what}: expected a JSON object with an integer 'version'")
    if value["version"] > VERSION:
        raise ValueError(
            f"{what}: format version {value['version']} is newer than this "
            f"tensorboard_rnn_units understands ({VERSION}); upgrade the package"
        )
    if value["version"] < 1:
        raise ValueError(f"{what}: format version {value['version']} is not one this package wrote")
    return value
