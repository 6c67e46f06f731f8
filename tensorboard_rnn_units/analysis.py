"""Comparing units across steps and runs: pure numpy and scipy, no I/O, no torch.

Every function takes per-unit arrays with units on the first axis, e.g. the
``(H, S)`` activation sample (each unit's signal on the probe's sample
windows) or ``(H, L * D)`` flattened averages.

- Change of a unit between two steps: ``1 - correlation`` of its two rows.
- Units matched between two runs (Li et al. 2016, "Convergent learning"):
  one-to-one by the correlation of their activations, maximising the total
  (Hungarian assignment).
- Layer similarity: linear CKA (Kornblith et al. 2019), invariant to
  permuting units and to scaling them all alike.
"""

import numpy as np

# scipy is imported where it is used: TensorBoard imports the plugin (and so
# this module) at start-up, and importing scipy there would add about 0.4 s.


def standardize(rows):
    """``(rows centred and scaled to unit norm, float64; which rows vary)``.
    A constant row becomes zeros: it has no correlation with anything."""
    rows = np.asarray(rows, np.float64)
    rows = rows.reshape(rows.shape[0], -1)
    centred = rows - rows.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    varies = norms[:, 0] > 1e-12 * np.maximum(1.0, np.abs(rows).max(axis=1))
    return np.where(varies[:, None], centred / np.where(norms > 0, norms, 1.0), 0.0), varies


def change(a, b):
    """``(H,)``: ``1 - correlation`` of each unit's row in ``a`` and in ``b``.

    0 for an unchanged unit, up to 2 for one that flipped sign. A unit
    constant at both steps counts as unchanged if its values are equal and
    as changed (1) if not; constant at one step only, changed (1).
    """
    za, va = standardize(a)
    zb, vb = standardize(b)
    correlation = np.sum(za * zb, axis=1)
    flat = ~va & ~vb
    equal = np.all(np.isclose(np.reshape(a, (len(za), -1)), np.reshape(b, (len(zb), -1))), axis=1)
    correlation = np.where(flat, equal.astype(np.float64), correlation)
    return np.clip(1.0 - correlation, 0.0, 2.0)  # rounding can leave 1 - 1 at -2e-16


def cross_correlation(a, b):
    """``(Ha, Hb)`` correlation of every unit of ``a`` with every unit of ``b`` (same samples)."""
    return standardize(a)[0] @ standardize(b)[0].T


def match(a, b):
    """Units of ``a`` matched one-to-one to units of ``b`` by correlation, maximising the total.

    Returns:
      ``(assignment, similarity)``: for each unit of ``a`` its unit of ``b``
      (-1 for units of the larger layer left over) and the pair's correlation
      (NaN where unmatched).
    """
    from scipy import optimize

    correlation = cross_correlation(a, b)
    rows, cols = optimize.linear_sum_assignment(correlation, maximize=True)
    assignment = np.full(len(correlation), -1, dtype=np.int64)
    similarity = np.full(len(correlation), np.nan)
    assignment[rows], similarity[rows] = cols, correlation[rows, cols]
    return assignment, similarity


def gram(sample):
    """The centred Gram matrix over samples of an ``(H, S)`` sample, scaled to
    unit Frobenius norm (float64): linear CKA of two layers is the sum of the
    elementwise product of their ``gram``s.

    The ``(S, H) @ (H, S)`` product, the only costly part (every logged step
    computes one), runs in float32 on the centred sample scaled to at most 1
    (the result is scale-free, and so nothing overflows or underflows): half
    the time of float64, and about 1e-8 from it, far below the float16 the
    writer stores it in."""
    x = np.asarray(sample, np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    largest = np.abs(x).max() if x.size else 0.0
    x = (x / largest if largest > 0 else x).astype(np.float32)
    k = (x.T @ x).astype(np.float64)
    norm = np.linalg.norm(k)
    return k / norm if norm > 0 else k


def linear_cka(a, b):
    """Linear CKA between two ``(H, S)`` samples of the same windows (0..1)."""
    return float(np.sum(gram(a) * gram(b)))


def cka_matrix(grams):
    """``(n, n)`` linear CKA between every pair of ``gram``s (renormalised,
    so grams stored at low precision still give exactly 1 with themselves)."""
    flat = np.stack([np.ravel(g) for g in grams]).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    flat = np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 0)
    return np.clip(flat @ flat.T, 0.0, 1.0)


def dominant_class(class_weight):
    """``(H,)`` each unit's class of largest mean weight, -1 for a unit with no weight at all."""
    class_weight = np.asarray(class_weight)
    return np.where(class_weight.max(axis=1) > 0, class_weight.argmax(axis=1), -1)


def units_per_class(class_weight):
    """``(C,)`` how many units have each class as their ``dominant_class``."""
    classes = dominant_class(class_weight)
    return np.bincount(classes[classes >= 0], minlength=np.shape(class_weight)[1])


def settled(changes, threshold):
    """Per unit, the index of the first transition after which its change
    stays below ``threshold``, or -1 if its last change is not below it.

    Args:
      changes: ``(T, H)`` change of each unit at each of ``T`` transitions
        between consecutive steps (transition ``t`` leads to step ``t + 1``).

    Returns:
      ``(H,)`` ints: 0 when it never changed more than ``threshold``, ``t + 1``
      when transition ``t`` was its last large change, -1 when the last
      transition was above ``threshold``.
    """
    changes = np.asarray(changes)
    above = changes >= threshold
    if not len(changes):
        return np.zeros(changes.shape[1], dtype=np.int64)
    last = len(changes) - 1 - np.argmax(above[::-1], axis=0)  # last transition above the threshold
    result = np.where(above.any(axis=0), last + 1, 0)
    return np.where(above[-1], -1, result)


def similarity_order(rows):
    """A unit order in which neighbours behave alike: the leaf order of
    average-linkage clustering on correlation distance (optimal leaf
    ordering, so adjacent leaves are as similar as possible)."""
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    z, _ = standardize(rows)
    if len(z) < 3:
        return np.arange(len(z))
    distances = np.clip(distance.pdist(z, "sqeuclidean") / 2.0, 0.0, None)  # 1 - correlation
    tree = hierarchy.linkage(distances, method="average", optimal_ordering=len(z) <= 1024)
    return hierarchy.leaves_list(tree)
