"""The text demo's data: Python source from the standard library, as
sequences of character tokens with per-character annotations.

``load_stdlib_text()`` reads a fixed list of modules that ship with Python
(no download), maps each character to a token of ``VOCAB`` and cuts each
file into sequences that start at a line start. ``annotate(text)`` describes
every character with a small scanner (one regular expression): whether the
reader is inside a string literal, a comment or brackets, and the column.

Each annotation describes the state *after reading* the character, which is
what an RNN's state at that position can know: an opening quote is already
inside its string and the closing quote is not; an opening bracket is inside
the brackets and the one that closes them is not; a newline is column 0 and
the first character of a line column 1.
"""

import dataclasses
import os
import platform
import re

import numpy as np

# Printable ASCII and the newline; anything else (tabs, non-ASCII) is UNKNOWN.
UNKNOWN = "\N{REPLACEMENT CHARACTER}"
VOCAB = ("\n", *(chr(code) for code in range(32, 127)), UNKNOWN)

# Pure-Python standard-library modules, single files in current Pythons (all
# of them in 3.11 and 3.12); any a version lacks is skipped. About 1.6 MB.
STDLIB_FILES = (
    "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py", "configparser.py",
    "contextlib.py", "copy.py", "csv.py", "dataclasses.py", "difflib.py", "enum.py",
    "fnmatch.py", "fractions.py", "functools.py", "gettext.py", "glob.py", "heapq.py",
    "inspect.py", "ipaddress.py", "locale.py", "os.py", "pprint.py", "random.py", "shlex.py",
    "shutil.py", "statistics.py", "string.py", "subprocess.py", "tarfile.py", "textwrap.py",
    "threading.py", "tokenize.py", "traceback.py", "typing.py", "warnings.py",
)

ANNOTATIONS = ("in_string", "in_comment", "in_brackets", "column")

# Comments, string literals (triple-quoted first; a backslash escapes any
# character, also in raw strings and across lines) and brackets, scanned left
# to right, so a quote in a comment or a bracket in a string does not count.
# Prefixes (r, b, f) need no care: a string is in_string from its quote on.
_SCANNER = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>\"\"\"(?:\\.|[^\\])*?\"\"\" | '''(?:\\.|[^\\])*?'''
                  | "(?:\\.|[^"\\\n])*" | '(?:\\.|[^'\\\n])*')
      | (?P<open>[(\[{])
      | (?P<close>[)\]}])""",
    re.VERBOSE | re.DOTALL,
)

_TOKEN_OF_CODE = np.full(128, VOCAB.index(UNKNOWN), dtype=np.int64)
for _token, _char in enumerate(VOCAB[:-1]):
    _TOKEN_OF_CODE[ord(_char)] = _token


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """Character sequences with per-character annotations.

    Attributes:
      sequences: int64 ``(N, T)`` tokens, indices into ``vocab``.
      annotations: name -> ``(N, T)`` array, one value per character
        (``ANNOTATIONS``; bool, and float32 for ``column``).
      vocab: the token strings.
      source: one line saying where the text came from.
    """

    sequences: np.ndarray
    annotations: dict
    vocab: tuple
    source: str


def encode(text):
    """int64 tokens of ``text``, one per character (``UNKNOWN`` for those not in ``VOCAB``)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return _TOKEN_OF_CODE[np.minimum(codes, 127)] if text else np.zeros(0, np.int64)


def decode(tokens):
    """The text of a token sequence."""
    return "".join(VOCAB[token] for token in tokens)


def annotate(text):
    """Per-character annotations of Python source ``text``: name -> ``(len(text),)``.

    ``in_string``, ``in_comment`` and ``in_brackets`` (bool) and ``column``
    (float32) as the module docstring defines them. Never raises: text that is
    not valid Python (an unterminated string, an unbalanced bracket) gets a
    best guess (an unterminated quote is an ordinary character; brackets
    closed more often than opened count as none open).
    """
    n = len(text)
    starts = {"string": [], "comment": []}
    ends = {"string": [], "comment": []}
    depth_change = np.zeros(n, np.int64)
    for match in _SCANNER.finditer(text):
        kind = match.lastgroup
        if kind == "open":
            depth_change[match.start()] = 1
        elif kind == "close":
            depth_change[match.start()] = -1
        else:
            starts[kind].append(match.start())
            # A string ends before its last character (the closing quote).
            ends[kind].append(match.end() - (kind == "string"))
    inside = {kind: _spans_mask(n, starts[kind], ends[kind]) for kind in starts}
    # Bracket depth after each character, never below zero.
    depth = np.cumsum(depth_change)
    depth -= np.minimum(np.minimum.accumulate(depth), 0)
    position = np.arange(n)
    newline = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == ord("\n")
    last_newline = np.maximum.accumulate(np.where(newline, position, -1)) if n else position
    return {
        "in_string": inside["string"],
        "in_comment": inside["comment"],
        "in_brackets": depth > 0,
        "column": (position - last_newline).astype(np.float32),
    }


def _spans_mask(n, starts, ends):
    """Bool ``(n,)``: true on each half-open span ``starts[i]:ends[i]`` (disjoint)."""
    change = np.zeros(n + 1, np.int64)
    np.add.at(change, np.asarray(starts, np.int64), 1)
    np.add.at(change, np.asarray(ends, np.int64), -1)
    return np.cumsum(change[:n]) > 0


def line_start_chunks(text, length):
    """Starts of chunks of ``length`` characters of ``text``: each at a line
    start, the next at the first line start after the previous chunk's end."""
    starts, position = [], 0
    while position + length <= len(text):
        starts.append(position)
        position = text.find("\n", position + length - 1) + 1
        if position == 0:
            break
    return starts


def load_stdlib_text(sequence_length=100, files=STDLIB_FILES, directory=None):
    """Python source of ``files`` from the standard library (``directory``,
    default the one holding ``os.py``) as ``sequence_length``-character
    sequences that start at line starts, with their annotations.

    Deterministic for a given Python version. Files missing from this
    version are skipped.
    """
    directory = directory or os.path.dirname(os.__file__)
    tokens, annotations, count, chars = [], {name: [] for name in ANNOTATIONS}, 0, 0
    for name in files:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        starts = line_start_chunks(text, sequence_length)
        if not starts:
            continue
        count, chars = count + 1, chars + len(text)
        rows = np.asarray(starts)[:, None] + np.arange(sequence_length)
        tokens.append(encode(text)[rows])
        for key, values in annotate(text).items():
            annotations[key].append(values[rows])
    if not tokens:
        raise FileNotFoundError(f"none of the demo's standard-library files is in {directory}")
    sequences = np.concatenate(tokens)
    return TextDataset(
        sequences=sequences,
        annotations={key: np.concatenate(parts) for key, parts in annotations.items()},
        vocab=VOCAB,
        source=f"Python {platform.python_version()} standard library: {count} modules, "
        f"{chars:,} characters, {len(sequences)} sequences of {sequence_length}",
    )

