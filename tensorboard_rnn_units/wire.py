"""The binary form the plugin's routes send arrays in (decoded by ``frontend/model.js``).

Layout of one buffer, little-endian throughout:

- bytes ``0..4``: uint32 ``n``, the length of the header;
- bytes ``4..4 + n``: UTF-8 JSON header, the caller's keys plus
  ``"arrays": [{"name", "dtype", "shape", "offset", "nbytes"}, ...]``;
- each array's raw C-order bytes at its ``offset``, counted from the start
  of the buffer and a multiple of 8 (zero padding in between), so the
  browser can view them as typed arrays without copying.

Nested JSON lists would be about 30 times slower to encode and parse.
"""

import json
import struct

import numpy as np

from tensorboard_rnn_units.metadata import DTYPES

_ALIGN = 8


def pack(header, arrays):
    """Encodes ``header`` (a JSON-serialisable dict) and ``arrays`` into one buffer.

    Args:
      header: dict of JSON values; its ``"arrays"`` key, if any, is replaced.
      arrays: ordered mapping of name to numpy array with a dtype in ``DTYPES``.

    Returns:
      The buffer as ``bytes``.

    Raises:
      ValueError: an array has another dtype.
    """
    blobs = []
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.name not in DTYPES:
            raise ValueError(
                f"array {name!r}: dtype must be one of {DTYPES}, got {array.dtype}"
            )
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        blobs.append((name, array.dtype.name, list(array.shape), little.tobytes()))

    # The offsets are in the header, whose length moves the offsets: grow the
    # data start until the header fits before it (a few rounds at most).
    start = 0
    while True:
        specs, offset, size = [], start, start
        for name, dtype, shape, data in blobs:
            specs.append(
                {"name": name, "dtype": dtype, "shape": shape, "offset": offset,
                 "nbytes": len(data)}
            )
            size = offset + len(data)
            offset = _aligned(size)
        encoded = json.dumps(dict(header, arrays=specs)).encode("utf-8")
        needed = _aligned(4 + len(encoded))
        if needed <= start:
            break
        start = needed

    out = bytearray(size)
    out[0:4] = struct.pack("<I", len(encoded))
    out[4 : 4 + len(encoded)] = encoded
    for spec, (_, _, _, data) in zip(specs, blobs):
        out[spec["offset"] : spec["offset"] + len(data)] = data
    return bytes(out)


def _aligned(offset):
    return -(-offset // _ALIGN) * _ALIGN
