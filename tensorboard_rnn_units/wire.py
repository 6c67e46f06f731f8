"""The binary form the plugin's routes send arrays in (decoded by ``frontend/model.js``).

Layout of one buffer, little-endian throughout:

- bytes ``0..4``: uint32 ``n``, the length of the header;
- bytes ``4..4 + n``: UTF-8 JSON header, the caller's keys plus
  ``"arrays": [{"name", "dtype", "shape", "axes", "offset", "nbytes"}, ...]``
  (``axes`` names each dimension, see ``metadata``);
- each array's raw C-order bytes at its ``offset``, counted from the start
  of the buffer and a multiple of 8 (zero padding in between), so the
  browser can view them as typed arrays without copying.

Nested JSON lists would be about 30 times slower to encode and parse.
"""

import json
import struct

from tensorboard_rnn_units import metadata


def pack(header, arrays):
    """Encodes ``header`` (a JSON-serialisable dict) and ``arrays`` into one buffer.

    Args:
      header: dict of JSON values; its ``"arrays"`` key, if any, is replaced.
      arrays: ordered mapping of name to ``(numpy array, axes)``, dtypes in
        ``metadata.DTYPES``.

    Raises:
      ValueError: an array has another dtype.
    """
    data, specs = metadata.pack_arrays({name: array for name, (array, _) in arrays.items()})
    for spec, (_, axes) in zip(specs, arrays.values()):
        spec["axes"] = list(axes)
    # The offsets are in the header, whose length moves the offsets: grow the
    # data start until the header fits before it (a few rounds at most).
    start = 0
    while True:
        shifted = [dict(spec, offset=spec["offset"] + start) for spec in specs]
        encoded = json.dumps(dict(header, arrays=shifted)).encode("utf-8")
        needed = -(-(4 + len(encoded)) // 8) * 8
        if needed <= start:
            break
        start = needed
    prefix = struct.pack("<I", len(encoded)) + encoded
    return prefix + bytes(start - len(prefix)) + data
