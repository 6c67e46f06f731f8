"""What ``compute_unit_features`` returns: each weighting's per-unit features and the whole layer's."""

import dataclasses
from typing import Dict, Optional

import torch


@dataclasses.dataclass(frozen=True)
class WeightedFeatures:
    """One weighting's per-unit results (float64 tensors on the CPU).

    Attributes:
      average: ``(H, L, D)`` weighted-average window; zeros for a dead unit.
      rollout: ``(H, R, D)`` weighted-average rollout, or ``None`` when R = 0.
      active_fraction: ``(H,)`` fraction of windows with positive weight.
      effective_sample_size: ``(H,)`` ``(sum w)^2 / (sum w^2 * n)``; low = selective.
      position_share: ``(H, P)`` share of the unit's weight per window end position.
      class_weight: ``(H, C)`` mean weight per class, or ``None`` without labels.
      dead: ``(H,)`` bool, all weights zero.
      exemplar_sequence: ``(H, k)`` int64 probe sequence of each unit's ``k``
        highest-weighted windows, best first (for ``"bottom"``: lowest signals).
      exemplar_end: ``(H, k)`` int64 their end ``e``: the window is inputs ``e - L .. e - 1``.
      exemplar_signal: ``(H, k)`` the unit's signal at their last step.
    """

    average: torch.Tensor
    rollout: Optional[torch.Tensor]
    active_fraction: torch.Tensor
    effective_sample_size: torch.Tensor
    position_share: torch.Tensor
    class_weight: Optional[torch.Tensor]
    dead: torch.Tensor
    exemplar_sequence: torch.Tensor
    exemplar_end: torch.Tensor
    exemplar_signal: torch.Tensor


@dataclasses.dataclass(frozen=True)
class UnitFeatures:
    """Per-unit features of one model on one probe.

    Each weighting's results are indexed by name, ``features["top"]``, in
    the order of ``features.weightings``; ``weighted`` is the same dict.
    ``probe_fingerprint`` is ``Probe.fingerprint``, to tell which probe the
    features were measured on; ``probe_data`` is the probe's own (CPU)
    tokens or sequences, not a copy, logged once per run for exemplars.

    ``annotation_correlation[name]`` ``(H,)``: Pearson correlation, over the
    windows, of each unit's signal at a window's last step with the
    annotation there (0 where either is constant). ``gate_saturation[gate]``
    ``(H,)``: fraction of windows whose gate activation at the last step is
    below 0.1 or above 0.9; ``time_constant`` ``(H,)``: ``-1 / log m`` of the
    mean keep gate ``m`` (LSTM forget, GRU update), in steps (inf: never
    forgets); both ``None`` for cells without gates.
    """

    weighted: Dict[str, WeightedFeatures]
    signal_mean: torch.Tensor  # (H,)
    signal_max: torch.Tensor  # (H,)
    activation_sample: torch.Tensor  # (H, S) float32 signal on the probe's activation sample
    mean_window: torch.Tensor  # (L, D)
    mean_rollout: Optional[torch.Tensor]  # (R, D); without "relu", over the activation sample's windows
    class_counts: Optional[torch.Tensor]  # (C,) windows per class
    class_names: Optional[list]
    signal: str
    layer: int
    context: str
    top_fraction: float
    num_windows: int
    display: str
    probe_fingerprint: str
    probe_data: torch.Tensor
    vocab: Optional[list]
    channel_names: Optional[list]
    annotation_correlation: Dict[str, torch.Tensor]
    gate_saturation: Optional[Dict[str, torch.Tensor]]
    time_constant: Optional[torch.Tensor]

    def __getitem__(self, weighting):
        try:
            return self.weighted[weighting]
        except (KeyError, TypeError):
            raise KeyError(f"weighting {weighting!r} was not computed; these were {self.weightings}") from None

    # Not a mapping: without this, iter() and `in` would call __getitem__(0), (1), ...
    __iter__ = None

    def __getattr__(self, name):  # only called when normal lookup fails
        hint = ""
        if name in WeightedFeatures.__dataclass_fields__:
            hint = f"; index the weighting first, e.g. features['top'].{name}"
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}{hint}")

    @property
    def weightings(self):
        """The weighting names, in the order they were asked for."""
        return tuple(self.weighted)

    @property
    def units(self):
        return self.signal_mean.shape[0]

    @property
    def window(self):
        return self.mean_window.shape[0]

    @property
    def input_size(self):
        return self.mean_window.shape[1]

    @property
    def rollout_steps(self):
        return 0 if self.mean_rollout is None else self.mean_rollout.shape[0]

    @property
    def positions(self):
        return next(iter(self.weighted.values())).position_share.shape[1]
