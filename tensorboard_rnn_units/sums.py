"""Running sums over window batches, turned into ``UnitFeatures``.

Weights come from ``weights.Threshold``s (``"top"`` and ``"bottom"`` from
each unit's most extreme signals, kept by ``Largest``); the weighted sums of
windows and rollouts, the statistics, exemplars, annotation correlations
and gate saturations accumulate on the model's device, in float64, and are
all-reduced across ranks under ``torch.distributed``.
"""

import dataclasses
import math
from typing import Optional

import torch

from tensorboard_rnn_units.results import UnitFeatures, WeightedFeatures
from tensorboard_rnn_units.weights import Threshold, kept_sparse

# Gate activations below LOW or above HIGH count as saturated.
SATURATION = (0.1, 0.9)


class Largest:
    """Each unit's ``k`` largest values of ``sign * signal`` so far, ``(H, k)``
    descending, and (``keyed``) the windows they came from: the exemplars, and
    the candidates for the ``"top"``/``"bottom"`` thresholds (``k x H``
    memory, not the probe's). Kept unit-major: one unsorted ``topk`` along
    rows, then a sort of the ``k`` kept, is about twice as fast as down
    columns. Adds wait in ``pending`` until ``PENDING_ROWS`` rows (or a
    read) and are then cut to candidates: for ``k`` under 64 (exemplars),
    once ``k`` are kept, the values above each unit's k-th kept; else each
    unit's values above a sampled threshold (``_above_sampled_threshold``)."""

    def __init__(self, k, units, sign, device, dtype, keyed):
        self.k, self.sign = k, sign
        self._values = torch.empty(units, 0, dtype=dtype, device=device)
        self._keys = torch.empty(units, 0, dtype=torch.int64, device=device) if keyed else None
        self.pending, self.pending_keys, self.pending_rows = [], [], 0

    @property
    def values(self):
        """``(H, k)`` the largest so far, descending (pending blocks merged first)."""
        self.flush()
        return self._values

    @property
    def keys(self):
        """``(H, k)`` their windows, or None when not keyed."""
        self.flush()
        return self._keys

    def add(self, blocks, keys=None):
        """Adds a list of ``(B_i, H)`` signal blocks, read as their concatenation
        (and not copied into one), of windows ``keys`` ``(B,)`` (when keyed).
        Small adds wait until ``PENDING_ROWS`` rows: one selection over them
        costs about what one over a few hundred rows does."""
        if self.k == 0:  # no exemplars asked for
            return
        self.pending += blocks
        if keys is not None:
            self.pending_keys.append(keys)
        self.pending_rows += sum(block.shape[0] for block in blocks)
        if self.pending_rows >= PENDING_ROWS:
            self.flush()

    def flush(self):
        """Merges the pending blocks into the kept values."""
        if not self.pending:
            return
        keyed, full = self._keys is not None, self._values.shape[1] == self.k
        blocks, keys = self.pending, None
        if keyed:
            keys = self.pending_keys[0] if len(self.pending_keys) == 1 else torch.cat(self.pending_keys)
        self.pending, self.pending_keys, self.pending_rows = [], [], 0
        if self.sign < 0:
            blocks = [-block for block in blocks]
        if full and self.k < 64:
            # Few kept (exemplars): only values above a unit's k-th kept can enter, usually a handful.
            found, counts = _above(blocks, self._values[:, -1], at=False)
            values, rows = _unit_major(*found, counts, keyed)
        elif (candidates := _above_sampled_threshold(blocks, self.k, keyed)) is not None:
            values, rows = candidates  # the same k largest, from about 1.5 k values per unit instead of B
        else:
            values, rows = (blocks[0] if len(blocks) == 1 else torch.cat(blocks)).T, None
            if keyed:  # each unit's k largest first: keys for those, not (H, B) of them
                values, rows = values.topk(min(self.k, values.shape[1]), dim=1, sorted=False)
        if keyed:
            keys = keys[rows]
        self._merge(values, keys)

    def gather(self):
        """Merges every rank's values (and keys): each rank then holds the ``k`` largest of all."""
        self.flush()
        # Every rank sends k columns (all_gather needs equal shapes): short ones padded with -inf,
        # which never make the top k of all (k is at most the probe's windows).
        missing = self.k - self._values.shape[1]
        pad = lambda t, value: torch.cat([t, t.new_full((t.shape[0], missing), value)], 1)
        parts = [pad(self._values, -torch.inf)] + ([] if self._keys is None else [pad(self._keys, 0)])
        merged = []
        for part in parts:
            copies = [torch.empty_like(part) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(copies, part.contiguous())
            merged.append(torch.cat(copies, 1))
        self._values = self._values[:, :0]
        if self._keys is not None:
            self._keys = self._keys[:, :0]
        self._merge(merged[0], merged[1] if self._keys is not None else None)

    def _merge(self, values, keys):
        """Keeps the ``k`` largest of the kept and ``values`` ``(H, n)`` (with
        their ``keys``), a group of units at a time (``MERGE_ELEMENTS``)."""
        units, k = values.shape[0], min(self.k, self._values.shape[1] + values.shape[1])
        if k == 0:  # nothing yet
            return
        group = max(1, MERGE_ELEMENTS // k)
        merged = [self._merge_group(values, keys, a, a + group, k) for a in range(0, units, group)]
        if len(merged) == 1:
            self._values, self._keys = merged[0]
            return
        self._values = torch.cat([v for v, _ in merged])
        if self._keys is not None:
            self._keys = torch.cat([kk for _, kk in merged])

    def _merge_group(self, values, keys, a, b, k):
        """The ``k`` largest of units ``a:b``, kept and new, sorted descending (and their keys)."""
        values, keys = values[a:b], None if keys is None else keys[a:b]
        if self._values.shape[1]:
            values = torch.cat([self._values[a:b], values], 1)
            keys = None if keys is None else torch.cat([self._keys[a:b], keys], 1)
        kept, index = values.topk(k, dim=1, sorted=False)
        kept, order = kept.sort(dim=1, descending=True)
        return kept, None if keys is None else keys.gather(1, index.gather(1, order))

    def exemplars(self, positions, window):
        """``(sequence, end, signal)``, each ``(H, k)`` on the CPU."""
        keys = self.keys.to("cpu")
        return keys // positions, keys % positions + window, (self.sign * self.values).to("cpu", torch.float64)


# Largest._merge takes units in groups that keep about this many values, so that its working memory
# (the group's kept and new values side by side, topk's and sort's int64 indices) stays small beside
# the kept values: a loader probe's memory grows by its candidates, not several times them.
MERGE_ELEMENTS = 2**18

# Largest.add merges once this many rows are pending.
PENDING_ROWS = 8192

# _above_sampled_threshold: a unit's threshold is taken from one in SAMPLE_EVERY of its values.
SAMPLE_EVERY = 16


def _above_sampled_threshold(blocks, k, keyed):
    """Each unit's signals in ``blocks`` (``(n_i, H)`` signals, read as one
    ``(n, H)``) at or above a threshold that at least ``k`` of them reach, as
    ``(H, m)`` values (padded with -inf) and (``keyed``) their rows, else
    ``None``: a superset of each unit's ``k`` largest, ``m`` (the largest
    unit's count) about 1.5 to 1.9 k for k in the thousands, more for fewer.
    The threshold is a high value of a fixed sample of the rows (one in
    ``SAMPLE_EVERY`` of each block's), far enough down it that the count
    above it falls short of ``k`` for about one unit in 10^6. NaN signals
    are never candidates (``Sums`` refuses them). ``None`` (every row a
    candidate) when ``k`` is under 64 or ``n`` under ``8 k`` (a plain
    ``topk`` is as fast), when some unit's threshold leaves fewer than ``k``,
    or when one leaves over ``max(4 k, 1024)``: values tied at it (a dead
    unit's zeros) would make the block as wide as the probe."""
    n = sum(block.shape[0] for block in blocks)
    if k < 64 or n < 8 * k:
        return None
    generator = torch.Generator().manual_seed(0)
    picks = [torch.randperm(len(block), generator=generator)[: len(block) // SAMPLE_EVERY].sort().values
             for block in blocks]
    sample = torch.cat([block[pick.to(block.device)] for block, pick in zip(blocks, picks)])
    if not len(sample):
        return None
    # The r-th largest of the sample has about r * SAMPLE_EVERY values at or above it, give or take
    # SAMPLE_EVERY * sqrt(r): the smallest r with 5 of those below r * SAMPLE_EVERY still above k.
    rank = min(len(sample), math.ceil(((5 + math.sqrt(25 + 4 * k / SAMPLE_EVERY)) / 2) ** 2))
    threshold = sample.T.topk(rank, dim=1).values[:, -1]
    found, counts = _above(blocks, threshold, at=True)
    if bool((counts < k).any()) or int(counts.max()) > max(4 * k, 1024):  # short (or a NaN threshold), or ties
        return None
    return _unit_major(*found, counts, keyed)


def _above(blocks, threshold, at):
    """``((row, unit, value), counts)``: the signals in ``blocks`` above (``at``:
    at or above) each unit's ``threshold`` ``(H,)``, by row, and how many each unit has."""
    found, start = [], 0
    for block in blocks:
        row, unit = (block >= threshold if at else block > threshold).nonzero(as_tuple=True)
        found.append((row + start, unit, block[row, unit]))
        start += len(block)
    row, unit, value = (torch.cat(parts) for parts in zip(*found))
    return (row, unit, value), torch.bincount(unit, minlength=blocks[0].shape[1])


def _unit_major(row, unit, value, counts, keyed):
    """``(values, rows)`` ``(H, m)`` of ``_above``'s signals, each unit's in a
    row padded with -inf (``m`` its largest count); ``rows`` None unless ``keyed``."""
    units, width = len(counts), int(counts.max())
    unit, by_unit = torch.sort(unit, stable=True)
    slot = torch.arange(unit.numel(), device=unit.device) - (counts.cumsum(0) - counts)[unit]
    values = value.new_full((units, width), -torch.inf)
    values[unit, slot] = value[by_unit]
    if not keyed:
        return values, None
    rows = torch.zeros((units, width), dtype=torch.int64, device=unit.device)
    rows[unit, slot] = row[by_unit]
    return values, rows


@dataclasses.dataclass
class Weighed:
    """A batch's weights (``weights.DenseWeights`` or ``SparseWeights`` per weighting) and which windows to roll
    out and sum: all (``rows`` None) with ``"relu"``, else those some unit
    weighs plus the activation sample's (for the mean rollout), as an index
    tensor; with each window's key and activation-sample row (``Sums._in_sample``)."""

    weights: dict
    rows: Optional[torch.Tensor]
    keys: torch.Tensor
    sample_rows: torch.Tensor


class Sums:
    """Running sums over window batches on the model's device, turned into
    ``UnitFeatures`` at the end.

    Products are taken in at least float32 (half-precision models would
    overflow) and accumulated in float64. Window and rollout sums are kept
    transposed, ``(L * D, H)``, so that token windows add by index.
    """

    def __init__(self, probe, weightings, model, rollout, exemplars, top_fraction, walker, device, dtype):
        units = model.hidden_size
        self.weightings, self.rollout, self.tokens = weightings, rollout, probe.vocab is not None
        self.dtype = torch.promote_types(dtype, torch.float32)
        self.device = device
        self.thresholds = {"relu": Threshold(0.0, sparse=kept_sparse(device, 1.0))}
        self.count = 0
        self.finite = torch.ones((), dtype=torch.bool, device=device)
        zeros = lambda *shape: torch.zeros(*shape, dtype=accumulator_dtype(device), device=device)
        self.window_sum = zeros(probe.window * probe.input_size)
        self.rollout_sum = zeros(rollout * probe.input_size)
        self.rollout_count = 0  # windows in rollout_sum
        self.signal_sum = zeros(units)
        self.signal_sq = zeros(units)
        self.signal_max = torch.full((units,), -torch.inf, dtype=self.window_sum.dtype, device=device)
        self.by_weighting = {
            name: {
                "average": zeros(probe.window * probe.input_size, units),
                "rollout": zeros(rollout * probe.input_size, units),
                "weight": zeros(units),
                "weight_sq": zeros(units),
                "active": zeros(units),
                "position": zeros(probe.positions, units),
                "class": zeros(probe.num_classes, units),
            }
            for name in weightings
        }
        # Exemplars: the highest signals serve "top" and "relu", the lowest "bottom".
        signs = {sign_of(name) for name in weightings}
        self.exemplars = {
            sign: Largest(min(exemplars, probe.num_windows), units, sign, device, self.dtype, keyed=True)
            for sign in signs
        }
        self.num_windows = probe.num_windows
        kept = lambda fraction: self.num_windows - int((1.0 - fraction) * (self.num_windows - 1))
        self.largest = {sign: Largest(kept(top_fraction), units, sign, device, self.dtype, keyed=False) for sign in signs}
        self.labels = walker.inputs.labels  # (N,) on the model's device, or None
        self.annotations = walker.inputs.annotations  # (N, T, A) or None
        self.annotation_names = list(probe.annotations)
        count = len(self.annotation_names)
        self.annotation_sum, self.annotation_sq, self.cross = zeros(count), zeros(count), zeros(units, count)
        self.gate_names = tuple(getattr(model, "gate_names", ())) if walker.gates else ()
        self.keep_gate = getattr(model, "keep_gate", None)
        self.gate_saturated, self.gate_sum = zeros(len(self.gate_names), units), zeros(len(self.gate_names), units)
        # The activation sample, gathered as its windows pass: each sample
        # window's key (sequence * P + position) ascending, and one row per
        # sample window.
        self.positions, self.window = probe.positions, probe.window
        self.token_offsets = torch.arange(probe.window, device=device) * probe.input_size
        self.sample_keys = probe.sample_keys.to(device)
        self.sample = torch.zeros(probe.sample.numel(), units, dtype=torch.float32, device=device)
        self.class_counts = probe.window_class_counts()
        self.distributed = walker.shard[1] > 1

    def candidates(self, blocks):
        """Adds a list of first-pass signal blocks ``(B_i, H)`` to the threshold candidates."""
        blocks = [block.to(self.dtype) for block in blocks]
        for largest in self.largest.values():
            largest.add(blocks)

    def threshold(self, weighting, fraction):
        """The ``Threshold`` of ``"top"`` or ``"bottom"``, once every window's
        candidates are in; the candidates are let go (the second pass needs only this)."""
        sign = sign_of(weighting)
        largest = self.largest.pop(sign)
        if self.distributed:
            largest.gather()
        if not torch.isfinite(largest.values).all():
            raise not_finite("rnn")
        return Threshold.from_largest(largest.values, self.num_windows, fraction, sign,
                                      sparse=kept_sparse(self.device, fraction))

    def weigh(self, batch):
        """The batch's ``Weighed``: its weights, and the windows to roll out and sum."""
        signal = batch.signal.to(self.dtype)
        weights = {name: self.thresholds[name].weights(signal) for name in self.weightings}
        keys = self._keys(batch)
        sample_rows = self._in_sample(keys)
        if "relu" in self.weightings:
            return Weighed(weights, None, keys, sample_rows)
        weighed = sample_rows < self.sample_keys.numel()
        for w in weights.values():
            weighed |= w.positive_rows()
        return Weighed(weights, weighed.nonzero().squeeze(1), keys, sample_rows)

    def _keys(self, batch):
        """Each window's key, ``sequence * P + position``: its place among the probe's windows."""
        return batch.sequence * self.positions + batch.position

    def _in_sample(self, keys):
        """Each window's row in the activation sample; the sample's size for windows outside it."""
        found = torch.searchsorted(self.sample_keys, keys).clamp_max(len(self.sample_keys) - 1)
        return torch.where(self.sample_keys[found] == keys, found, len(self.sample_keys))  # no device sync

    def add(self, batch, windows, predictions, weighed):
        """Adds a batch, ``weighed`` by ``weigh``; ``predictions`` are the rollouts of its ``rows``."""
        weights, rows, keys, sample_rows = weighed.weights, weighed.rows, weighed.keys, weighed.sample_rows
        signal = batch.signal.to(self.dtype)
        self.count += signal.shape[0]
        batch_max = signal.amax(0)  # with amin, NaN propagates: cheaper than isfinite over the batch
        self.finite &= torch.isfinite(batch_max).all() & torch.isfinite(signal.amin(0)).all()
        if self.tokens:  # (B, L) tokens: row l * V + token of each window position
            windows = windows + self.token_offsets
            self.window_sum += torch.bincount(windows.flatten(), minlength=self.window_sum.numel())
        else:
            windows = windows.to(self.dtype)
            self.window_sum += windows.sum(0)
        self.signal_sum += signal.sum(0)
        self.signal_max = torch.maximum(self.signal_max, batch_max)
        inside = (sample_rows < self.sample_keys.numel()).nonzero().squeeze(1)  # a few windows, if any
        self.sample.index_copy_(0, sample_rows[inside], signal[inside].to(torch.float32))
        for exemplars in self.exemplars.values():
            exemplars.add([signal], keys)
        if self.annotations is not None:
            a = self.annotations[batch.sequence, batch.position + self.window - 1].to(self.dtype)  # (B, A)
            wide = a.to(self.cross.dtype)
            self.signal_sq += (signal.to(self.signal_sq.dtype) ** 2).sum(0)  # only correlations need it
            self.annotation_sum += wide.sum(0)
            self.annotation_sq += (wide * wide).sum(0)
            self.cross += (signal.T @ a).to(self.cross.dtype)
        if self.gate_names:
            gates = batch.gates.to(self.dtype)
            low, high = SATURATION
            self.gate_saturated += ((gates < low) | (gates > high)).sum(0)
            self.gate_sum += gates.sum(0)
        if predictions is not None:
            predictions = predictions.to(self.dtype)
            if rows is None:
                self.rollout_sum += predictions.sum(0)
                self.rollout_count += predictions.shape[0]
            else:  # only the sample's rollouts are a fair mean
                in_sample = sample_rows[rows] < self.sample_keys.numel()
                self.rollout_sum += in_sample.to(predictions.dtype) @ predictions
                self.rollout_count += in_sample.sum()
        classes = None if self.labels is None else self.labels[batch.sequence]
        position = batch.position
        if rows is not None:  # the other windows weigh 0 for every unit
            windows, position = windows[rows], position[rows]
            classes = None if classes is None else classes[rows]
        for name in self.weightings:
            sums = self.by_weighting[name]
            w = weights[name] if rows is None else weights[name].take(rows)
            sums["active"] += w.active()
            products = {} if self.tokens else {"average": windows}  # token windows add by index, below
            if predictions is not None:
                products["rollout"] = predictions
            for key, product in zip(products, w.products(list(products.values()))):
                sums[key] += product
            if self.tokens:
                w.add_at(sums["average"], windows)
            # Weights (and their squares) in the accumulators' precision: in float32, w * w
            # underflows (w < 1e-19) or overflows (w > 1e19) and the ESS leaves [0, 1].
            total, square = w.totals(sums["weight"].dtype)
            sums["weight"] += total
            sums["weight_sq"] += square
            sums["position"] += w.by_group(position, sums["position"].shape[0])
            if classes is not None:
                sums["class"] += w.by_group(classes, sums["class"].shape[0])

    def _all_reduce(self):
        """Sums every rank's sums (max, min, merged exemplars where a sum is not the answer)."""
        dist = torch.distributed
        totals = [self.window_sum, self.rollout_sum, self.signal_sum, self.signal_sq, self.annotation_sum,
                  self.annotation_sq, self.cross, self.gate_saturated, self.gate_sum,
                  *(t for sums in self.by_weighting.values() for t in sums.values())]
        counts = torch.tensor([self.count, float(self.rollout_count), float(not self.finite)],
                              dtype=self.window_sum.dtype, device=self.window_sum.device)
        for t in (*totals, counts):
            dist.all_reduce(t)
        self.count, self.rollout_count, self.finite = int(counts[0]), float(counts[1]), counts[2] == 0
        dist.all_reduce(self.signal_max, op=dist.ReduceOp.MAX)
        dist.all_reduce(self.sample)  # each sample window is on one rank, zeros elsewhere
        for exemplars in self.exemplars.values():
            exemplars.gather()

    def result(self, probe, signal, model, context, top_fraction):
        if self.distributed:
            self._all_reduce()
        if not self.finite:
            raise not_finite("rnn")
        self._check_overflow(probe)
        sample = self.sample.T.to("cpu").contiguous()
        check_finite("rnn", sample)  # a float64 signal can overflow the sample's float32
        cpu = lambda t: t.to("cpu", torch.float64)
        n = self.count
        exemplars = {sign: e.exemplars(self.positions, self.window) for sign, e in self.exemplars.items()}
        weighted = {}
        for name, device_sums in self.by_weighting.items():
            sums = {key: cpu(value) for key, value in device_sums.items()}
            total = sums["weight"]
            dead = total <= 0
            safe = torch.where(dead, torch.ones_like(total), total)
            per_unit = lambda t: torch.where(dead[:, None], torch.zeros_like(t), t / safe[:, None])
            ess = torch.where(dead, torch.zeros_like(total), total**2 / (sums["weight_sq"].clamp_min(1e-300) * n))
            ess = ess.clamp_max(1.0)  # <= 1 (Cauchy-Schwarz); more only if w * w underflowed float64
            sequence, end, exemplar_signal = exemplars[self.thresholds[name].sign]
            weighted[name] = WeightedFeatures(
                average=per_unit(sums["average"].T).reshape(-1, probe.window, probe.input_size),
                rollout=per_unit(sums["rollout"].T).reshape(-1, self.rollout, probe.input_size) if self.rollout else None,
                active_fraction=sums["active"] / n,
                effective_sample_size=ess,
                position_share=per_unit(sums["position"].T),
                class_weight=None
                if self.class_counts is None
                else sums["class"].T / self.class_counts.clamp_min(1)[None, :],
                dead=dead,
                exemplar_sequence=sequence,
                exemplar_end=end,
                exemplar_signal=exemplar_signal,
            )
            check_finite("readout", weighted[name].rollout)
        check_finite("readout", self.rollout_sum)
        gate_saturation = time_constant = None
        if self.gate_names:
            saturated, mean_gate = cpu(self.gate_saturated) / n, cpu(self.gate_sum) / n
            gate_saturation = dict(zip(self.gate_names, saturated))
            keep = mean_gate[self.gate_names.index(self.keep_gate)]
            time_constant = torch.where(keep >= 1, torch.inf, -1 / torch.log(keep))
        return UnitFeatures(
            weighted=weighted,
            signal_mean=cpu(self.signal_sum) / n,
            signal_max=cpu(self.signal_max),
            activation_sample=sample,
            mean_window=(cpu(self.window_sum) / n).reshape(probe.window, probe.input_size),
            mean_rollout=(cpu(self.rollout_sum) / float(self.rollout_count)).reshape(self.rollout, probe.input_size)
            if self.rollout else None,
            class_counts=self.class_counts,
            class_names=probe.class_names,
            signal=signal,
            layer=getattr(model, "layer", -1),
            context=context,
            top_fraction=float(top_fraction),
            num_windows=n,
            display=probe.display,
            probe_fingerprint=probe.fingerprint,
            probe_data=probe.data,
            vocab=probe.vocab,
            channel_names=probe.channel_names,
            annotation_correlation=self._correlations(),
            gate_saturation=gate_saturation,
            time_constant=time_constant,
        )

    def _correlations(self):
        """``{name: (H,)}`` Pearson correlation of each unit's signal with each annotation (0 if undefined)."""
        if not self.annotation_names:
            return {}
        n = self.count
        cpu = lambda t: t.to("cpu", torch.float64)
        s, s2, a, a2, sa = (cpu(t) for t in (self.signal_sum, self.signal_sq, self.annotation_sum,
                                              self.annotation_sq, self.cross))
        cov = sa / n - (s / n)[:, None] * (a / n)[None, :]
        var_s = (s2 / n - (s / n) ** 2).clamp_min(0)
        var_a = (a2 / n - (a / n) ** 2).clamp_min(0)
        scale = (var_s[:, None] * var_a[None, :]).sqrt()
        # Below ~1e-12 relative, a "variance" is rounding of a constant.
        defined = (var_s[:, None] > 1e-12 * (s2 / n)[:, None]) & (var_a[None, :] > 1e-12 * (a2 / n)[None, :])
        r = torch.where(defined, cov / torch.where(defined, scale, torch.ones_like(scale)), torch.zeros_like(cov))
        r = r.clamp(-1.0, 1.0)
        return {name: r[:, i].contiguous() for i, name in enumerate(self.annotation_names)}

    def _check_overflow(self, probe):
        """Finite signals can still overflow the sums of products taken in ``self.dtype``
        (e.g. inputs of 1e30 weighted by signals of 1e10 in float32): name the culprit
        rather than return NaN. Rollout sums are the readout's (checked after)."""
        finite = lambda *ts: all(bool(torch.isfinite(t).all()) for t in ts)
        keys = ("weight", "weight_sq", "active", "position", "class")
        if not finite(self.signal_sum, *(s[k] for s in self.by_weighting.values() for k in keys)):
            raise ValueError(
                f"rnn: its signals overflow {self.dtype} when summed over the probe's windows "
                f"(largest {float(self.signal_max.max()):.3g}); has the model diverged?"
            )
        if not finite(self.window_sum, *(s["average"] for s in self.by_weighting.values())):
            largest = float("nan") if probe.data is None else float(probe.data.abs().max())
            raise ValueError(
                f"probe: its inputs (up to |x| = {largest:.3g}) weighted by the units' signals overflow "
                f"{self.dtype}; rescale the sequences (or measure a float64 model)"
            )


def sign_of(weighting):
    """-1 for ``"bottom"``, which weighs the low tail of the signals; else 1."""
    return -1.0 if weighting == "bottom" else 1.0


def accumulator_dtype(device):
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def check_finite(source, values):
    if values is not None and not torch.isfinite(values).all():
        raise not_finite(source)


def not_finite(source):
    return ValueError(f"{source}: produced NaN or Inf on the probe; the features would be meaningless")
