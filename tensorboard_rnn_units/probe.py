"""Probe: the fixed windows (and labels) every logged step is measured on."""

import torch

from tensorboard_rnn_units import metadata


class Probe:
    """Fixed probe data: every window of ``window`` consecutive inputs.

    A window is ``sequences[n, e - L:e]`` for an end position ``e`` in
    ``L..T``. All ``N * (T - L + 1)`` windows are used unless ``max_windows``
    asks for a uniform sample without replacement, drawn reproducibly from
    ``seed`` (torch's global RNG is not touched). Keep one probe for a whole
    training run so that logged steps are comparable.

    Args:
      sequences: tensor or array ``(N, T, D)``, batch-first whatever the
        model's ``batch_first``; finite values.
      window: ``L``, in ``1..T``.
      labels: optional ``(N,)`` integer class per sequence, for the class
        statistics.
      class_names: optional names, one per class (``len >= max(labels) + 1``).
      max_windows: optional cap on the number of windows used.
      seed: seed of the window sample.
      display: how a viewer draws an ``(L, D)`` window, one of
        ``metadata.DISPLAYS`` (``"image_rows"``: row ``i`` is input ``i``).

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
        display="image_rows",
    ):
        x = torch.as_tensor(sequences)
        if x.dim() != 3:
            raise ValueError(
                f"sequences: expected a 3-D (N, T, D) tensor, got shape {tuple(x.shape)}"
            )
        if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
            raise ValueError(f"sequences: expected real numbers, got dtype {x.dtype}")
        x = x.detach().to("cpu", torch.float32)
        n, t, d = x.shape
        if n == 0 or d == 0:
            raise ValueError(f"sequences: expected N >= 1 and D >= 1, got shape {tuple(x.shape)}")
        if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= t:
            raise ValueError(f"window: expected an integer in 1..T={t}, got {window!r}")
        if not torch.isfinite(x).all():
            raise ValueError("sequences: contains NaN or Inf values")
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
            if isinstance(max_windows, bool) or not isinstance(max_windows, int) or max_windows < 1:
                raise ValueError(f"max_windows: expected a positive integer, got {max_windows!r}")
            generator = torch.Generator().manual_seed(seed)
            chosen = torch.randperm(total, generator=generator)[: min(max_windows, total)]
            chosen = chosen.sort().values
        # Windows sorted by sequence, then end position.
        self.window_sequence = chosen // positions
        self.window_position = chosen % positions  # e - L, in 0..P-1
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

    def on(self, device, dtype):
        """The probe's tensors on ``device`` as ``dtype``, cached across calls."""
        key = (str(device), dtype)
        if key not in self._cache:
            labels = None if self.labels is None else self.labels.to(device)
            self._cache[key] = (
                self.sequences.to(device, dtype),
                self.window_sequence.to(device),
                self.window_position.to(device),
                labels,
            )
        return self._cache[key]


def _check_labels(labels, class_names, n):
    if labels is None:
        if class_names is not None:
            raise ValueError("class_names: given without labels")
        return None, None
    labels = torch.as_tensor(labels)
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
        class_names = [str(c) for c in range(num_classes)]
    else:
        class_names = [str(name) for name in class_names]
        if len(class_names) < num_classes:
            raise ValueError(
                f"class_names: {len(class_names)} names, but labels go up to {num_classes - 1}"
            )
    return labels, class_names
