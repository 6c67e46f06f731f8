"""Probe: the fixed windows (and labels, annotations) every logged step is measured on."""

import collections.abc
import hashlib
import json

import numpy as np
import torch

from tensorboard_rnn_units import metadata
from tensorboard_rnn_units.validation import check_int


class Probe:
    """Fixed probe data: every window of ``window`` consecutive inputs.

    A window is ``sequences[n, e - L:e]`` for an end position ``e`` in
    ``L..T``. All ``N * (T - L + 1)`` windows are used unless ``max_windows``
    asks for a uniform sample without replacement, drawn reproducibly from
    ``seed`` (torch's global RNG is not touched). Keep one probe for a whole
    training run so that logged steps are comparable; ``fingerprint`` tells
    probes apart.

    Three kinds of data, each with its own display (``display=None``
    chooses: ``vocab`` means ``"tokens"``, ``channel_names`` means
    ``"series"``, anything else ``"image_rows"``):

    - image rows or any vectors: ``sequences`` ``(N, T, D)`` floats;
    - time series: the same with ``channel_names``, one name per channel;
    - tokens: ``sequences`` ``(N, T)`` integer tokens in ``0..V-1`` or
      ``(N, T, V)`` one-hot floats, with ``vocab``. The RNN reads
      ``embed(tokens)`` (e.g. the model's ``nn.Embedding``), or one-hot
      tokens without ``embed``; the averages are over one-hot tokens either
      way: ``(L, V)`` distributions over the vocabulary, so ``D = V``.

    ``sequences`` may also be a *loader*: any re-iterable of batches that is
    not a list or tuple (e.g. a ``DataLoader`` yielding ``(n, T, D)``
    sequences, ``(sequences, labels)`` pairs, or tokens with ``vocab``). It
    is read once here, to check and fingerprint it, then once per pass when
    measured (once for ``"relu"``, twice with ``"top"`` or ``"bottom"``),
    never held whole: memory grows with its batches, not the probe. Every
    window is used, its batches must come in the same order each time, and
    its data is not logged for exemplars (their indices are).

    Args:
      sequences: tensor or array, ``(N, T, D)`` or for tokens ``(N, T)``,
        batch-first whatever the model's ``batch_first``; finite values.
      window: ``L``, in ``1..T``.
      labels: optional ``(N,)`` integer class per sequence, for the class
        statistics.
      class_names: optional names, one per class (``len >= max(labels) + 1``).
      max_windows: optional cap on the number of windows used.
      seed: seed of the window sample and of the activation sample.
      sample_size: how many windows form the *activation sample*, on which
        every logged step stores each unit's signal (to compare units across
        steps and runs); all windows when there are fewer.
      display: how a viewer draws an ``(L, D)`` window, one of
        ``metadata.DISPLAYS`` (``"image_rows"``: row ``i`` is input ``i``;
        ``"series"``: a line per channel; ``"tokens"``: text), or ``None``.
      vocab: for tokens, the ``V`` token strings (e.g. characters).
      channel_names: for series, the ``D`` channel names.
      embed: for integer tokens, a callable mapping ``(B,)`` int64 tokens on
        the model's device to the ``(B, E)`` inputs the RNN reads; an
        ``nn.Module`` is run in eval mode. Not part of the fingerprint.
      annotations: ``{name: (N, T) bool or float array}``, one value per
        input position (e.g. "inside a string"); each unit's correlation
        with each is measured (``UnitFeatures.annotation_correlation``).

    Attributes:
      fingerprint: 16 hex characters of a SHA-256 of what defines the windows
        (the sequences as float32, ``L``, the chosen windows, the labels, the
        activation sample), the same across processes, versions and platforms.
      sample: ``(S,)`` ascending indices of the activation sample's windows.
      tokens: ``(N, T)`` int64 tokens of a token probe, else ``None``
        (``sequences`` is then ``None`` too: one-hot tokens are never stored).
      annotations: ``{name: (N, T) float tensor}``.

    Raises:
      ValueError: a bad shape, value or argument, naming it.
    """

    def __init__(
        self,
        sequences,
        window,
        labels=None,
        class_names=None,
        max_windows=None,
        seed=0,
        sample_size=512,
        display=None,
        vocab=None,
        channel_names=None,
        embed=None,
        annotations=None,
    ):
        self.vocab, self.channel_names, self.embed = _check_names("vocab", vocab), None, None
        if embed is not None and self.vocab is None:
            raise ValueError("embed: maps integer tokens, so it needs vocab= (the tokens' strings)")
        if embed is not None and not callable(embed):
            raise ValueError(f"embed: expected a callable (B,) tokens -> (B, E) inputs, got {type(embed).__name__}")
        self.embed = embed
        self.tokens = self.sequences = self.loader = None
        if _is_loader(sequences):
            for name, value in (("labels", labels), ("max_windows", max_windows), ("annotations", annotations)):
                if value is not None:
                    raise ValueError(
                        f"{name}: not with a loader probe" + (" (yield (sequences, labels) pairs)" if name == "labels"
                                                             else "; use a tensor probe")
                    )
            self.loader = sequences
            (n, t, d), labels, self._batches, stream_digest = self._scan()
        else:
            x = self._convert(sequences, "sequences")
            if self.vocab is not None:
                self.tokens = x
            else:
                self.sequences = x
            n, t = x.shape[:2]
            d = len(self.vocab) if self.vocab is not None else x.shape[2]
        if self.vocab is None:
            self.channel_names = _check_names("channel_names", channel_names)
            if self.channel_names is not None and len(self.channel_names) != d:
                raise ValueError(f"channel_names: {len(self.channel_names)} names for D={d} channels")
        elif channel_names is not None:
            raise ValueError("channel_names: a token probe (vocab=) has no channels")
        self.shape = (n, t)
        window = check_int("window", window, 1, t, hint=f" (T={t})")
        if display is None:
            display = "tokens" if self.vocab is not None else "series" if self.channel_names is not None else "image_rows"
        if display not in metadata.DISPLAYS:
            raise ValueError(f"display: expected one of {metadata.DISPLAYS} or None, got {display!r}")
        if (display == "tokens") != (self.vocab is not None):
            raise ValueError(f"display: {display!r} needs vocab= for tokens" if display == "tokens"
                             else f"display: a token probe (vocab=) is drawn as 'tokens', got {display!r}")
        self.window = window
        self.display = display
        self.seed = check_int("seed", seed, 0)
        self.input_size = d
        self.labels, self.class_names = _check_labels(labels, class_names, n)
        self.annotations = _check_annotations(annotations, n, t)

        positions = t - window + 1
        total = n * positions
        sample_size = check_int("sample_size", sample_size, 1)
        sampler = torch.Generator().manual_seed(self.seed + 1)
        if self.loader is not None:
            # Every window, never listed (memory must not grow with the probe).
            self.window_sequence = self.window_position = None
            self.num_windows = total
            self.sample = _sample_without_listing(total, sample_size, sampler)
        else:
            if max_windows is None:
                chosen = torch.arange(total)
            else:
                max_windows = check_int("max_windows", max_windows, 1)
                generator = torch.Generator().manual_seed(self.seed)
                chosen = torch.randperm(total, generator=generator)[: min(max_windows, total)]
                chosen = chosen.sort().values
            # Windows sorted by sequence, then end position.
            self.window_sequence = chosen // positions
            self.window_position = chosen % positions  # e - L, in 0..P-1
            self.num_windows = chosen.numel()
            self.sample = torch.randperm(chosen.numel(), generator=sampler)[:sample_size].sort().values
        self.fingerprint = self._fingerprint(stream_digest if self.loader is not None else None)
        self._cache = {}

    @property
    def data(self):
        """The probe's data as logged for exemplars: ``tokens`` or ``sequences``."""
        return self.tokens if self.tokens is not None else self.sequences

    @property
    def num_sequences(self):
        return self.shape[0]

    @property
    def length(self):
        return self.shape[1]

    @property
    def sample_keys(self):
        """``(S,)`` ascending keys ``sequence * P + position`` of the activation sample's windows."""
        if self.window_sequence is None:
            return self.sample
        return (self.window_sequence * self.positions + self.window_position)[self.sample]

    def window_class_counts(self):
        """``(C,)`` float64 windows per class, or ``None`` without labels."""
        if self.labels is None:
            return None
        per_window = self.labels.repeat_interleave(self.positions) if self.window_sequence is None \
            else self.labels[self.window_sequence]
        return torch.bincount(per_window, minlength=self.num_classes).to(torch.float64)

    def stream(self):
        """A loader probe's batches again, converted and checked: ``(n, T, D)``
        float or ``(n, T)`` int64 CPU tensors. A loader that yields other data
        than it did when the probe was made (e.g. ``shuffle=True``) is an error."""
        batches = iter(self.loader)
        for i, expected in enumerate(self._batches):
            x = self._convert(_sequences_of(next(batches, None), i), f"loader batch {i}")
            if _checksum(x) != expected:
                raise ValueError(
                    f"probe: its loader yielded other data in batch {i} than when the Probe was made; a loader "
                    "probe must yield the same batches in the same order every time (no shuffle=True)"
                )
            yield x
        if next(batches, None) is not None:
            raise ValueError("probe: its loader yielded more batches than when the Probe was made")

    def _scan(self):
        """One pass over the loader: ``((N, T, D), labels, per-batch checksums, digest of the data)``."""
        if isinstance(self.loader, collections.abc.Iterator):
            raise ValueError(
                "sequences: an iterator can be read only once; pass a re-iterable loader (a DataLoader) or a tensor"
            )
        shape, labels, checksums = None, [], []
        digest = hashlib.sha256()
        for i, batch in enumerate(self.loader):
            x = self._convert(_sequences_of(batch, i), f"loader batch {i}")
            if isinstance(batch, (tuple, list)) and len(batch) == 2:
                labels.append(_as_tensor(f"labels of loader batch {i}", batch[1]).reshape(-1))
            d = len(self.vocab) if self.vocab is not None else x.shape[2]
            if shape is not None and (x.shape[1], d) != shape[1:]:
                raise ValueError(
                    f"sequences: loader batch {i} has T={x.shape[1]}, D={d}; earlier batches had T={shape[1]}, D={shape[2]}"
                )
            shape = (x.shape[0] + (shape[0] if shape else 0), x.shape[1], d)
            checksums.append(_checksum(x))
            digest.update(np.ascontiguousarray(x.numpy(), "<i8" if self.vocab is not None else "<f4"))
        if shape is None:
            raise ValueError("sequences: the loader yielded no batches")
        if labels and len(labels) != len(checksums):
            raise ValueError("labels: some loader batches are (sequences, labels) pairs and some are not")
        return shape, (torch.cat(labels) if labels else None), checksums, digest.digest()

    def _convert(self, value, what):
        """``value`` (the sequences, or a loader's batch: ``what``) as this probe's
        kind of data (tokens or float sequences), checked; errors name ``what``."""
        try:
            x = _as_tensor("sequences", value)
            return _as_tokens(x, len(self.vocab)) if self.vocab is not None else _as_sequences(x)
        except ValueError as e:
            raise ValueError(str(e).replace("sequences:", f"{what}:", 1)) from None

    @property
    def positions(self):
        """Number of window end positions, ``T - L + 1``."""
        return self.length - self.window + 1

    @property
    def num_classes(self):
        return 0 if self.class_names is None else len(self.class_names)

    def _fingerprint(self, stream_digest):
        digest = hashlib.sha256(FINGERPRINT_VERSION)

        def part(name, values, dtype):  # name, byte length, little-endian bytes
            data = np.ascontiguousarray(values, dtype=dtype)
            digest.update(name + data.nbytes.to_bytes(8, "little"))
            digest.update(data)

        if stream_digest is not None:  # a loader's data, hashed as it streamed by
            part(b"stream shape", (*self.shape, self.input_size), "<i8")
            part(b"stream", np.frombuffer(stream_digest, np.uint8), "u1")
            part(b"kind", np.frombuffer(json.dumps(self.vocab).encode("utf-8"), np.uint8), "u1")
        elif self.tokens is None:
            part(b"shape", self.sequences.shape, "<i8")
            part(b"sequences", self.sequences.numpy(), "<f4")
        else:  # a one-hot probe of the same tokens has the same windows
            part(b"token shape", self.tokens.shape, "<i8")
            part(b"tokens", self.tokens.numpy(), "<i8")
            part(b"vocab", np.frombuffer(json.dumps(self.vocab).encode("utf-8"), np.uint8), "u1")
        part(b"window", self.window, "<i8")
        if self.window_sequence is not None:
            part(b"window_sequence", self.window_sequence.numpy(), "<i8")
            part(b"window_position", self.window_position.numpy(), "<i8")
        part(b"sample", self.sample.numpy(), "<i8")
        if self.labels is None:
            part(b"no labels", [], "<i8")
        else:
            part(b"labels", self.labels.numpy(), "<i8")
        return digest.hexdigest()[:16]

    def on(self, device, dtype):
        """``(data, labels, annotations)`` on ``device``: the sequences as
        ``dtype`` (tokens stay int64), labels, and annotations ``(N, T, A)``
        as ``dtype`` or ``None``; cached across calls (so logging every k
        steps does not copy the probe each time; the copies live as long as
        the probe). Window indices stay on the CPU, where batches are scheduled."""
        key = (str(device), dtype)
        if key not in self._cache:
            labels = None if self.labels is None else self.labels.to(device)
            if self.loader is not None:
                data = None  # streamed batch by batch
            elif self.tokens is not None:  # contiguous: windows are gathered from its flattened rows
                data = self.tokens.to(device).contiguous()
            else:
                data = self.sequences.to(device, dtype).contiguous()
                if not torch.isfinite(data).all():  # e.g. beyond a float16 model's range
                    raise ValueError(
                        f"probe: its sequences (up to |x| = {float(self.sequences.abs().max()):.3g}) "
                        f"overflow the model's {dtype}; rescale them"
                    )
            annotations = None
            if self.annotations:
                annotations = torch.stack(list(self.annotations.values()), -1).to(device, dtype)
            self._cache[key] = (data, labels, annotations)
        return self._cache[key]


def _is_loader(value):
    """Whether ``value`` is a loader of batches rather than the data itself:
    iterable, but not a tensor, array, list or tuple (those are data)."""
    return not isinstance(value, (torch.Tensor, np.ndarray, list, tuple, str, bytes)) and hasattr(value, "__iter__")


def _sequences_of(batch, i):
    """The sequences of loader batch ``i``: the batch, or the first of a ``(sequences, labels)`` pair."""
    if batch is None:
        raise ValueError(f"probe: its loader yielded fewer batches than when the Probe was made (stopped at {i})")
    if isinstance(batch, (tuple, list)):  # (sequences,) as a TensorDataset of one tensor yields, or a pair
        if len(batch) not in (1, 2):
            raise ValueError(f"sequences: loader batch {i} is a {len(batch)}-tuple; expected sequences or (sequences, labels)")
        return batch[0]
    return batch


def _checksum(x):
    """A cheap summary of a batch, to notice a loader that changed its data."""
    return (tuple(x.shape), float(x.double().sum()), float((x.double() * torch.arange(1, x.shape[1] + 1).reshape(
        1, -1, *([1] * (x.dim() - 2)))).sum()))


def _sample_without_listing(total, size, generator):
    """``size`` distinct ascending integers drawn uniformly from ``0..total-1``
    (all of them when fewer), without a permutation of all ``total``."""
    if total <= 4 * size:
        return torch.randperm(total, generator=generator)[:size].sort().values
    chosen = {}  # insertion-ordered: the first ``size`` distinct draws
    while len(chosen) < size:
        for value in torch.randint(total, (size,), generator=generator).tolist():
            chosen.setdefault(value)
    return torch.tensor(list(chosen)[:size]).sort().values


def _as_sequences(x):
    """Checked ``(N, T, D)`` float sequences on the CPU: float64 stays float64
    (for float64 models), everything else becomes float32."""
    if x.dim() != 3:
        raise ValueError(f"sequences: expected a 3-D (N, T, D) tensor, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"sequences: expected real numbers, got dtype {x.dtype}")
    x = x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32)
    n, _, d = x.shape
    if n == 0 or d == 0:
        raise ValueError(f"sequences: expected N >= 1 and D >= 1, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("sequences: contains NaN or Inf values")
    if x.dtype == torch.float64 and x.numel() and x.abs().max() > FLOAT32_MAX:
        # The fingerprint hashes them as float32 and the logged arrays are float32 at most.
        raise ValueError(
            f"sequences: values up to |x| = {float(x.abs().max()):.3g} are beyond float32's range "
            f"({FLOAT32_MAX:.3g}), in which they are hashed and logged; rescale them"
        )
    return x


def _as_tokens(x, v):
    """``(N, T)`` int64 tokens from integer tokens or ``(N, T, V)`` one-hot floats."""
    if x.dim() == 3 and x.is_floating_point():
        if x.shape[2] != v:
            raise ValueError(f"sequences: one-hot tokens of size {x.shape[2]}, but vocab has V={v} tokens")
        tokens = x.argmax(2)
        if not torch.equal(x, torch.nn.functional.one_hot(tokens, v).to(x.dtype)):
            raise ValueError("sequences: with vocab, (N, T, V) floats must be one-hot (a single 1 per position)")
        x = tokens
    elif x.dim() != 2 or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(
            f"sequences: with vocab, expected (N, T) integer tokens or (N, T, V) one-hot floats, "
            f"got shape {tuple(x.shape)} of {x.dtype}"
        )
    x = x.detach().to("cpu", torch.int64)
    if x.numel() == 0:
        raise ValueError(f"sequences: expected N >= 1 and T >= 1, got shape {tuple(x.shape)}")
    if int(x.min()) < 0 or int(x.max()) >= v:
        raise ValueError(f"sequences: tokens must be in 0..{v - 1} (vocab has {v}), got {int(x.min())}..{int(x.max())}")
    return x


def _check_names(name, names):
    """A list of strings (``vocab``, ``channel_names``), or ``None``."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not hasattr(names, "__len__") or len(names) == 0:
        raise ValueError(f"{name}: expected a non-empty list of strings, got {names!r:.80}")
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{name}: expected strings, got {next(type(n).__name__ for n in names if not isinstance(n, str))}")
    return list(names)


def _check_annotations(annotations, n, t):
    """``{name: (N, T) float32 tensor}`` from ``annotations``."""
    if annotations is None:
        return {}
    if not isinstance(annotations, dict):
        raise ValueError(f"annotations: expected a dict of name -> (N, T) array, got {type(annotations).__name__}")
    result = {}
    for name, values in annotations.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"annotations: names must be non-empty strings, got {name!r}")
        a = _as_tensor(f"annotations[{name!r}]", values)
        if a.shape != (n, t) or a.is_complex():
            raise ValueError(f"annotations[{name!r}]: expected shape (N, T)=({n}, {t}) of numbers, got {tuple(a.shape)}")
        a = a.detach().to("cpu", torch.float32)
        if not torch.isfinite(a).all():
            raise ValueError(f"annotations[{name!r}]: contains NaN or Inf values")
        result[name] = a
    return result


def _as_tensor(name, value):
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: expected a tensor or array of numbers ({e})") from None


FLOAT32_MAX = float(np.finfo(np.float32).max)

# Prefix of the data hashed into Probe.fingerprint: change it when that data changes.
FINGERPRINT_VERSION = b"rnn_units.probe.v1"

# Without class_names, labels above this are taken for a mistake, not classes.
MAX_UNNAMED_CLASSES = 10_000


def _check_labels(labels, class_names, n):
    if labels is None:
        if class_names is not None:
            raise ValueError("class_names: given without labels")
        return None, None
    labels = _as_tensor("labels", labels)
    if labels.shape != (n,):
        raise ValueError(
            f"labels: expected shape (N,)=({n},), one class per sequence, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels: expected integer classes, got dtype {labels.dtype}")
    labels = labels.to("cpu", torch.int64)
    if (labels < 0).any():
        raise ValueError("labels: expected non-negative class indices")
    num_classes = int(labels.max()) + 1
    if class_names is None:
        if num_classes > MAX_UNNAMED_CLASSES:
            raise ValueError(
                f"labels: class index {num_classes - 1} is over {MAX_UNNAMED_CLASSES - 1}; "
                "pass class_names if there really are that many classes"
            )
        return labels, [str(c) for c in range(num_classes)]
    if isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
        raise ValueError(f"class_names: expected a list of names, got {type(class_names).__name__}")
    class_names = [str(name) for name in class_names]
    if len(class_names) < num_classes:
        raise ValueError(
            f"class_names: {len(class_names)} names, but labels go up to {num_classes - 1}"
        )
    return labels, class_names
