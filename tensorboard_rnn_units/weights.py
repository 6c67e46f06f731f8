"""Each window's weight for each unit, and the sums that need them.

A ``Threshold`` turns a slice's signals ``(B, H)`` into weights
``max(sign * (signal - value), 0)``. ``"top"`` and ``"bottom"`` keep about
``top_fraction`` of each unit's windows, so on a CPU their weights are kept
as ``SparseWeights``, the positive ones alone as (window, unit, weight)
triples: found in one comparison, and every sum over them costs what they
number, where ``DenseWeights`` pass over the whole ``(B, H)`` matrix about
ten times. Both offer the same sums.
"""

import dataclasses
from typing import Optional

import torch

# On a CPU, a weighting that keeps at most this share of each unit's windows
# is kept sparse ("relu" keeps about half; "top" and "bottom" top_fraction).
SPARSE_SHARE = 1 / 16

# Sparse weights take their products through a sparse matrix when these
# have at least this many columns in all, else densify first: one product
# through a sparse matrix built for it costs what a dense product of about
# 70 columns does (1,400 windows of 169 units, 2% positive: 0.21 ms sparse
# against 0.05 ms dense for 6 columns, 0.33 against 0.85 ms for 280), and
# the window and rollout products share one matrix.
SPARSE_COLUMNS = 128


def kept_sparse(device, share):
    """Whether a weighting that keeps ``share`` of each unit's windows keeps its weights sparse on ``device``."""
    return device.type == "cpu" and share <= SPARSE_SHARE


@dataclasses.dataclass
class Threshold:
    """Turns signals into weights: ``max(sign * (signal - value), 0)``, except
    that units whose ``value`` is their extreme (``tied``) weigh the windows
    at it 1. ``sign`` is -1 for ``"bottom"``, which weighs the negative tail.
    ``sparse``: the weights are ``SparseWeights``."""

    value: object  # float or (H,) tensor
    tied: Optional[torch.Tensor] = None  # (H,) bool
    sign: float = 1.0
    sparse: bool = False

    @classmethod
    def from_largest(cls, largest, count, fraction, sign, sparse=False):
        """The threshold keeping ``fraction`` of ``count`` windows, from each
        unit's ``k = count - floor((1 - fraction) (count - 1))`` largest values
        of ``sign * signal``, ``(H, k)`` descending: the ``1 - fraction``
        quantile interpolated as ``torch.quantile`` does, of ``sign * signal``."""
        rank = (1.0 - fraction) * (count - 1)
        v_lo = largest[:, count - int(rank) - 1]
        v_hi = largest[:, count - int(rank) - 2] if count - int(rank) >= 2 else v_lo
        value = torch.lerp(v_lo, v_hi, rank - int(rank))
        return cls(sign * value, value >= largest[:, 0], sign, sparse)

    def __post_init__(self):
        # Whether any unit is tied, asked once here, not on each batch.
        self.tied = None if self.tied is None or not bool(self.tied.any()) else self.tied

    def weights(self, signal):
        """The ``DenseWeights`` or ``SparseWeights`` of ``signal`` ``(B, H)``: dense
        unless ``sparse``, and dense after all for a slice where over
        ``SPARSE_SHARE`` of them are positive (a tied unit weighs every window
        at its extreme, and a saturated or dead unit's may be all of them)."""
        if self.sparse:
            sparse = self._sparse(signal)
            if len(sparse.weight) <= SPARSE_SHARE * signal.numel():
                return sparse
        d = signal - self.value if self.sign > 0 else self.value - signal
        if self.tied is None:
            return DenseWeights(d.clamp_min_(0))
        return DenseWeights(torch.where(self.tied, (d >= 0).to(d.dtype), d.clamp_min(0)))

    def _sparse(self, signal):
        """The positive weights alone, with the dense ones' values (NaN signals, which
        ``Sums`` refuses, weigh nothing here)."""
        value = torch.as_tensor(self.value, dtype=signal.dtype, device=signal.device).expand(signal.shape[1])
        positive = signal > value if self.sign > 0 else signal < value
        if self.tied is not None:
            positive |= self.tied & (signal == value)
        row, unit = positive.nonzero(as_tuple=True)
        s, v = signal[row, unit], value[unit]
        weight = s - v if self.sign > 0 else v - s
        if self.tied is not None:
            weight = torch.where(self.tied[unit], torch.ones_like(weight), weight)
        return SparseWeights(row, unit, weight, signal.shape)


class DenseWeights:
    """A slice's weights as one ``(B, H)`` matrix."""

    def __init__(self, w):
        self.w, self._wide = w, None

    def _in(self, dtype):
        """The weights in ``dtype``, converted once: totals and token index-adds both take them."""
        if self._wide is None or self._wide.dtype != dtype:
            self._wide = self.w.to(dtype)
        return self._wide

    def positive_rows(self):
        """``(B,)`` whether any unit weighs each window."""
        return self.w.amax(1) > 0

    def take(self, rows):
        """The weights of ``rows`` (an index), which hold every positive one."""
        return DenseWeights(self.w[rows])

    def active(self):
        """``(H,)`` how many windows each unit weighs."""
        return count_positive(self.w)

    def products(self, values):
        """``[v.T @ w for v in values]``, ``(F_i, H)`` for each ``(B, F_i)`` ``v``."""
        return [v.T @ self.w for v in values]

    def totals(self, dtype):
        """``(H,)`` sums of the weights and of their squares, taken in ``dtype``."""
        wide = self._in(dtype)
        return wide.sum(0), (wide * wide).sum(0)

    def by_group(self, group, groups):
        """``(groups, H)`` sums of the weights grouped by each window's ``group`` ``(B,)``."""
        return self.w.new_zeros(groups, self.w.shape[1]).index_add_(0, group, self.w)

    def add_at(self, sums, index):
        """Adds each window's weights to row ``index[b, l]`` of ``sums``, for every ``l``: token
        averages, one index-add per window position instead of a one-hot product."""
        wide = self._in(sums.dtype)
        for column in index.T:
            sums.index_add_(0, column, wide)


@dataclasses.dataclass
class SparseWeights:
    """A slice's positive weights as triples: ``weight[i]`` of window ``row[i]``
    for unit ``unit[i]``, of a ``shape`` ``(B, H)`` matrix, by row (so that a
    product reads each window's values once, not once for each unit). Its
    methods are ``DenseWeights``', with the same results."""

    row: torch.Tensor
    unit: torch.Tensor
    weight: torch.Tensor
    shape: tuple

    def positive_rows(self):
        return torch.zeros(self.shape[0], dtype=torch.bool, device=self.row.device).index_fill_(0, self.row, True)

    def take(self, rows):
        # rows ascend and hold every positive weight's window (Sums.weigh's nonzero): no window is lost
        return SparseWeights(torch.searchsorted(rows, self.row), self.unit, self.weight, (len(rows), self.shape[1]))

    def active(self):
        return torch.bincount(self.unit, minlength=self.shape[1])

    def products(self, values):
        if not values:
            return []
        if sum(v.shape[1] for v in values) < SPARSE_COLUMNS:
            dense = self.weight.new_zeros(self.shape).index_put_((self.row, self.unit), self.weight)
            return DenseWeights(dense).products(values)
        # Built from checked indices: unchecked ones make torch warn (2.11 with
        # check_invariants=False, 2.13 without the argument).
        matrix = torch.sparse_coo_tensor(torch.stack([self.unit, self.row]), self.weight, self.shape[::-1],
                                         check_invariants=True)
        return [torch.sparse.mm(matrix, v).T for v in values]

    def totals(self, dtype):
        wide = self.weight.to(dtype)
        zeros = lambda: wide.new_zeros(self.shape[1])
        return zeros().index_add_(0, self.unit, wide), zeros().index_add_(0, self.unit, wide * wide)

    def by_group(self, group, groups):
        flat = group[self.row] * self.shape[1] + self.unit
        return torch.bincount(flat, weights=self.weight, minlength=groups * self.shape[1]).view(groups, -1)

    def add_at(self, sums, index):
        positions = index.shape[1]
        sums.index_put_((index[self.row].flatten(), self.unit.repeat_interleave(positions)),
                        self.weight.to(sums.dtype).repeat_interleave(positions), accumulate=True)


def count_positive(w):
    """How many of each column's weights (``w >= 0``) are positive: the sum of
    their signs, exact in float32 up to 2**24 rows, and twice as fast as
    counting ``w > 0`` (an int64 reduction)."""
    signs = torch.sign(w)
    return signs.sum(0) if w.shape[0] <= 2**24 else signs.sum(0, dtype=torch.float64)
