"""Probe: the fixed windows (and labels) every logged step is measured on."""

import hashlib

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

    Args:
      sequences: tensor or array ``(N, T, D)``, batch-first whatever the
        model's ``batch_first``; finite values.
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
        ``metadata.DISPLAYS`` (``"image_rows"``: row ``i`` is input ``i``).

    Attributes:
      fingerprint: 16 hex characters of a SHA-256 of what defines the windows
        (the sequences as float32, ``L``, the chosen windows, the labels, the
        activation sample), the same across processes, versions and platforms.
      sample: ``(S,)`` ascending indices of the activation sample's windows.

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
        display="image_rows",
    ):
        x = _as_tensor("sequences", sequences)
        if x.dim() != 3:
            raise ValueError(
                f"sequences: expected a 3-D (N, T, D) tensor, got shape {tuple(x.shape)}"
            )
        if x.dtype == torch.bool or x.is_complex():
            raise ValueError(f"sequences: expected real numbers, got dtype {x.dtype}")
        # float64 stays float64 (for float64 models); everything else is float32.
        x = x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32)
        n, t, d = x.shape
        if n == 0 or d == 0:
            raise ValueError(f"sequences: expected N >= 1 and D >= 1, got shape {tuple(x.shape)}")
        window = check_int("window", window, 1, t, hint=f" (T={t})")
        if not torch.isfinite(x).all():
            raise ValueError("sequences: contains NaN or Inf values")
        if x.dtype == torch.float64 and x.abs().max() > FLOAT32_MAX:
            # The fingerprint hashes them as float32 and the logged arrays are float32 at most.
            raise ValueError(
                f"sequences: values up to |x| = {float(x.abs().max()):.3g} are beyond float32's range "
                f"({FLOAT32_MAX:.3g}), in which they are hashed and logged; rescale them"
            )
        if display not in metadata.DISPLAYS:
            raise ValueError(f"display: expected one of {metadata.DISPLAYS}, got {display!r}")
        self.sequences = x
        self.window = window
        self.display = display
        self.labels, self.class_names = _check_labels(labels, class_names, n)

        positions = t - window + 1
        total = n * positions
        if max_windows is None:
            chosen = torch.arange(total)
        else:
            max_windows = check_int("max_windows", max_windows, 1)
            generator = torch.Generator().manual_seed(check_int("seed", seed, 0))
            chosen = torch.randperm(total, generator=generator)[: min(max_windows, total)]
            chosen = chosen.sort().values
        # Windows sorted by sequence, then end position.
        self.window_sequence = chosen // positions
        self.window_position = chosen % positions  # e - L, in 0..P-1
        sample_size = check_int("sample_size", sample_size, 1)
        generator = torch.Generator().manual_seed(check_int("seed", seed, 0) + 1)
        self.sample = torch.randperm(chosen.numel(), generator=generator)[:sample_size].sort().values
        self.fingerprint = self._fingerprint()
        self._cache = {}

    @property
    def num_sequences(self):
        return self.sequences.shape[0]

    @property
    def length(self):
        return self.sequences.shape[1]

    @property
    def input_size(self):
        return self.sequences.shape[2]

    @property
    def positions(self):
        """Number of window end positions, ``T - L + 1``."""
        return self.length - self.window + 1

    @property
    def num_windows(self):
        return self.window_sequence.numel()

    @property
    def num_classes(self):
        return 0 if self.class_names is None else len(self.class_names)

    def _fingerprint(self):
        digest = hashlib.sha256(FINGERPRINT_VERSION)

        def part(name, values, dtype):  # name, byte length, little-endian bytes
            data = np.ascontiguousarray(values, dtype=dtype)
            digest.update(name + data.nbytes.to_bytes(8, "little"))
            digest.update(data)

        part(b"shape", self.sequences.shape, "<i8")
        part(b"sequences", self.sequences.numpy(), "<f4")
        part(b"window", self.window, "<i8")
        part(b"window_sequence", self.window_sequence.numpy(), "<i8")
        part(b"window_position", self.window_position.numpy(), "<i8")
        part(b"sample", self.sample.numpy(), "<i8")
        if self.labels is None:
            part(b"no labels", [], "<i8")
        else:
            part(b"labels", self.labels.numpy(), "<i8")
        return digest.hexdigest()[:16]

    def on(self, device, dtype):
        """``(sequences, labels)`` on ``device``, sequences as ``dtype``, cached
        across calls (so logging every k steps does not copy the probe each
        time; the copies live as long as the probe). Window indices stay on
        the CPU, where batches are scheduled."""
        key = (str(device), dtype)
        if key not in self._cache:
            labels = None if self.labels is None else self.labels.to(device)
            sequences = self.sequences.to(device, dtype)
            if not torch.isfinite(sequences).all():  # e.g. beyond a float16 model's range
                raise ValueError(
                    f"probe: its sequences (up to |x| = {float(self.sequences.abs().max()):.3g}) "
                    f"overflow the model's {dtype}; rescale them"
                )
            self._cache[key] = (sequences, labels)
        return self._cache[key]


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
