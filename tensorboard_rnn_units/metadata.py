"""The rnn_units summary format: the one place that knows it.

One logged step of one tag is a *blob sequence* (a rank-1 string tensor) of
two blobs, so a reader fetches a step in two reads:

- blob 0: a UTF-8 JSON header ``{"version": 1, "arrays": [{"name", "dtype",
  "shape", "offset", "nbytes"}, ...], **description}``;
- blob 1: every array's raw little-endian, C-order bytes, array ``i`` at
  byte ``arrays[i]["offset"]`` of the blob (a multiple of 8).

The ``SummaryMetadata`` plugin content is the UTF-8 JSON ``description``
alone (``version`` included, no ``arrays``), so a tag's shapes are known
without reading any step. ``data_class`` is ``DATA_CLASS_BLOB_SEQUENCE``:
without it TensorBoard's fast loader drops third-party data.

Description keys (version 1): ``units`` (H), ``window`` (L), ``rollout`` (R,
0 when none), ``input_size`` (D), ``positions`` (P = T - L + 1, window end
positions), ``display`` (how to draw an ``(L, D)`` window: ``"image_rows"``
draws it as an L x D image), ``class_names`` (list or ``None``),
``weightings`` (names, the default first), ``signal``, ``layer``,
``context``, ``num_windows``, ``top_fraction``.

Arrays (version 1); per weighting ``w`` in ``weightings``:

==============================  ==========  =================================
name                            shape       meaning
==============================  ==========  =================================
``mean_window``                 (L, D)      plain mean of all probe windows
``mean_rollout``                (R, D)      plain mean of all rollouts (R > 0)
``signal_mean``                 (H,)        mean signal over windows
``signal_max``                  (H,)        max signal over windows
``class_counts``                (C,)        windows per class (with labels)
``{w}/average``                 (H, L, D)   weighted-average window
``{w}/rollout``                 (H, R, D)   weighted-average rollout (R > 0)
``{w}/active_fraction``         (H,)        fraction of windows with w > 0
``{w}/effective_sample_size``   (H,)        (sum w)^2 / (sum w^2 * n)
``{w}/position_share``          (H, P)      share of weight per end position
``{w}/class_weight``            (H, C)      mean weight per class (labels)
``{w}/dead``                    (H,)        1 where all weights are zero
==============================  ==========  =================================

Large arrays are float16 (float32 where a value would overflow float16),
statistics float32, ``dead`` uint8.
"""

import json

import numpy as np

from tensorboard.compat.proto import summary_pb2

PLUGIN_NAME = "rnn_units"

# Bump when readers of the old format could misread the new one.
VERSION = 1

DTYPES = ("float16", "float32", "uint8")

DISPLAYS = ("image_rows",)

WEIGHTINGS = ("top", "relu")

_FLOAT16_MAX = float(np.finfo(np.float16).max)


def create_summary_metadata(description, display_name="", summary_description=""):
    """Returns the ``SummaryMetadata`` for a tag with this ``description`` dict."""
    content = dict(description, version=VERSION)
    return summary_pb2.SummaryMetadata(
        display_name=display_name,
        summary_description=summary_description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME,
            content=json.dumps(content, sort_keys=True).encode("utf-8"),
        ),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


# Description keys every reader relies on, each a non-negative integer.
SIZE_KEYS = ("units", "window", "rollout", "input_size", "positions")


def parse_plugin_metadata(content):
    """Parses plugin content bytes into the description dict.

    Raises:
      ValueError: not a JSON object with an integer ``version``, a version
        newer than this package understands, or a missing size or weighting.
    """
    description = _parse_json_object(content, "plugin content")
    for key in SIZE_KEYS:
        value = description.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"plugin content: {key!r} must be a non-negative integer, got {value!r}")
    weightings = description.get("weightings")
    if not isinstance(weightings, list) or not weightings or not set(weightings) <= set(WEIGHTINGS):
        raise ValueError(f"plugin content: 'weightings' must be a non-empty list of {WEIGHTINGS}, got {weightings!r}")
    return description


def encode_step(description, arrays):
    """Encodes one step as the two blobs described in the module docstring.

    Args:
      description: the tag's description dict (JSON-serialisable).
      arrays: ordered mapping of name to numpy array with a dtype in ``DTYPES``.
    """
    specs, data = pack_arrays(arrays)
    header = dict(description, version=VERSION, arrays=specs)
    return [json.dumps(header, sort_keys=True).encode("utf-8"), data]


def pack_arrays(arrays):
    """Lays arrays out back to back, each at a multiple of 8 bytes.

    Args:
      arrays: ordered mapping of name to numpy array with a dtype in ``DTYPES``.

    Returns:
      ``(specs, data)``: ``[{"name", "dtype", "shape", "offset", "nbytes"}]``
      and the little-endian, C-order bytes with zero padding between arrays.

    Raises:
      ValueError: an array has another dtype.
    """
    specs, chunks, offset = [], [], 0
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.name not in DTYPES:
            raise ValueError(
                f"array {name!r}: dtype must be one of {DTYPES}, got {array.dtype}"
            )
        data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        padding = -offset % 8
        chunks += [bytes(padding), data]
        offset += padding
        specs.append(
            {"name": name, "dtype": array.dtype.name, "shape": list(array.shape),
             "offset": offset, "nbytes": len(data)}
        )
        offset += len(data)
    return specs, b"".join(chunks)


def decode_header(blob):
    """Parses blob 0 of a step: the description plus its ``arrays`` list.

    Raises:
      ValueError: malformed JSON, newer version, or a bad ``arrays`` list.
    """
    header = _parse_json_object(blob, "step header")
    specs = header.get("arrays")
    if not isinstance(specs, list):
        raise ValueError("step header: 'arrays' must be a list")
    for spec in specs:
        if (
            not isinstance(spec, dict)
            or not isinstance(spec.get("name"), str)
            or spec.get("dtype") not in DTYPES
            or not isinstance(spec.get("shape"), list)
            or not all(isinstance(n, int) and n >= 0 for n in spec["shape"])
            or not all(isinstance(spec.get(k), int) and spec[k] >= 0 for k in ("offset", "nbytes"))
        ):
            raise ValueError(f"step header: malformed array spec {spec!r}")
    return header


def decode_step(blobs):
    """Inverse of ``encode_step``: returns ``(header, {name: numpy array})``.

    Raises:
      ValueError: not two blobs, an array whose declared size does not match
        its dtype and shape or lies outside the data blob, or a per-unit
        array whose first axis is not the header's ``units``.
    """
    if len(blobs) != 2:
        raise ValueError(f"step has {len(blobs)} blobs, expected 2 (header, data)")
    header = decode_header(blobs[0])
    data = blobs[1]
    arrays = {}
    for spec in header["arrays"]:
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        expected = dtype.itemsize * int(np.prod(spec["shape"], dtype=np.int64))
        start, nbytes = spec["offset"], spec["nbytes"]
        if nbytes != expected or start + nbytes > len(data):
            raise ValueError(
                f"array {spec['name']!r}: {nbytes} bytes at offset {start} of a "
                f"{len(data)}-byte data blob, expected {expected} for "
                f"{spec['dtype']} {spec['shape']}"
            )
        if is_per_unit(spec["name"]) and spec["shape"][:1] != [header.get("units")]:
            raise ValueError(
                f"array {spec['name']!r}: shape {spec['shape']} does not start with the "
                f"header's units ({header.get('units')!r})"
            )
        arrays[spec["name"]] = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=start).reshape(spec["shape"])
    return header, arrays


def compact_float(array):
    """float16 where every finite value fits, else float32: no silent overflow."""
    array = np.asarray(array, dtype=np.float32)
    finite = array[np.isfinite(array)]
    if finite.size and np.abs(finite).max() > _FLOAT16_MAX:
        return array
    return array.astype(np.float16)


def _parse_json_object(content, what):
    if isinstance(content, str):
        content = content.encode("utf-8")
    if not isinstance(content, (bytes, bytearray)):
        raise TypeError(f"{what}: expected bytes, got {type(content).__name__}")
    try:
        value = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what}: not UTF-8 JSON ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("version"), int):
        raise ValueError(f"{what}: expected a JSON object with an integer 'version'")
    if value["version"] > VERSION:
        raise ValueError(
            f"{what}: format version {value['version']} is newer than this "
            f"tensorboard_rnn_units understands ({VERSION}); upgrade the package"
        )
    return value


def is_per_unit(name):
    """Whether array ``name`` has a leading unit axis (H)."""
    return name in ("signal_mean", "signal_max") or name.split("/", 1)[0] in WEIGHTINGS
