"""A slow, obviously-correct reference of the unit-features math.

Loops over windows and units; runs PyTorch's own module forward (never the
package's step code), so the package is checked against torch itself.
"""

import torch
from torch import nn


def _run(module, inputs, state):
    """Runs ``module`` over ``inputs`` ``(t, D)`` from ``state``; returns the
    per-layer final ``(h, c)`` as lists of ``(H,)`` tensors (``c`` None)."""
    if isinstance(module, (nn.RNNCell, nn.GRUCell, nn.LSTMCell)):
        h, c = state
        for x in inputs:
            if isinstance(module, nn.LSTMCell):
                hh, cc = module(x[None], (h[0][None], c[0][None]))
                h, c = [hh[0]], [cc[0]]
            else:
                h = [module(x[None], h[0][None])[0]]
        return h, c
    h, c = state
    h0 = torch.stack(h)[:, None]  # (layers, 1, H)
    seq = inputs[None] if module.batch_first else inputs[:, None]
    if isinstance(module, nn.LSTM):
        _, (hn, cn) = module(seq, (h0, torch.stack(c)[:, None]))
        return list(hn[:, 0]), list(cn[:, 0])
    _, hn = module(seq, h0)
    return list(hn[:, 0]), None


def _zero_state(module):
    layers = getattr(module, "num_layers", 1)
    dtype = next(module.parameters()).dtype
    zeros = [torch.zeros(module.hidden_size, dtype=dtype) for _ in range(layers)]
    return zeros, ([z.clone() for z in zeros] if isinstance(module, (nn.LSTM, nn.LSTMCell)) else None)


def _param(module, name, layer):
    suffix = "" if isinstance(module, (nn.RNNCell, nn.GRUCell, nn.LSTMCell)) else f"_l{layer}"
    return getattr(module, name + suffix)


def reference_features(module, x, windows, window, *, signal, layer, weighting,
                       top_fraction=0.02, readout=None, rollout=0, labels=None,
                       num_classes=0, context="prefix"):
    """Features of ``module`` on windows ``[(n, p)]`` (end = p + window) of ``x`` ``(N, T, D)``."""
    layers = getattr(module, "num_layers", 1)
    layer = layer % layers
    signals, inputs, predictions = [], [], []
    with torch.no_grad():
        for n, p in windows:
            e = p + window
            start = 0 if context == "prefix" else e - window
            h, c = _run(module, x[n, start:e], _zero_state(module))
            if signal == "hidden":
                s = h[layer]
            elif signal == "cell":
                s = c[layer]
            else:  # preactivation: W_ih inp + b_ih + W_hh h_prev + b_hh
                h_prev, _ = _run(module, x[n, start : e - 1], _zero_state(module))
                inp = x[n, e - 1] if layer == 0 else h[layer - 1]
                s = (
                    _param(module, "weight_ih", layer) @ inp
                    + _param(module, "bias_ih", layer)
                    + _param(module, "weight_hh", layer) @ h_prev[layer]
                    + _param(module, "bias_hh", layer)
                )
            signals.append(s)
            inputs.append(x[n, e - window : e])
            preds = []
            for _ in range(rollout):
                y = readout(h[-1][None])[0]
                preds.append(y)
                h, c = _run(module, y[None], (h, c))
            if rollout:
                predictions.append(torch.stack(preds))
    S = torch.stack(signals)  # (W, H)
    X = torch.stack(inputs)  # (W, L, D)
    nw, units = S.shape
    if weighting == "relu":
        w = S.clamp_min(0)
    else:
        q = torch.quantile(S, 1 - top_fraction, dim=0)
        w = (S - q).clamp_min(0)
        for u in range(S.shape[1]):
            if q[u] >= S[:, u].max():  # top windows tied at the maximum: weigh them 1
                w[:, u] = (S[:, u] >= q[u]).to(S.dtype)
    positions = x.shape[1] - window + 1
    out = {"average": [], "rollout": [], "ess": [], "active": [], "position": [], "class": [], "dead": []}
    for u in range(units):
        total = w[:, u].sum()
        dead = bool(total == 0)
        out["dead"].append(dead)
        out["active"].append((w[:, u] > 0).double().mean())
        avg = torch.zeros_like(X[0])
        roll = torch.zeros_like(predictions[0]) if rollout else None
        pos = torch.zeros(positions, dtype=S.dtype)
        for i, (n, p) in enumerate(windows):
            avg = avg + w[i, u] * X[i]
            if rollout:
                roll = roll + w[i, u] * predictions[i]
            pos[p] += w[i, u]
        if dead:
            out["average"].append(torch.zeros_like(avg))
            out["rollout"].append(roll)
            out["position"].append(torch.zeros_like(pos))
            out["ess"].append(torch.tensor(0.0, dtype=S.dtype))
        else:
            out["average"].append(avg / total)
            out["rollout"].append(roll / total if rollout else None)
            out["position"].append(pos / total)
            out["ess"].append(total**2 / ((w[:, u] ** 2).sum() * nw))
        if labels is not None:
            per_class = []
            for k in range(num_classes):
                rows = [i for i, (n, _) in enumerate(windows) if labels[n] == k]
                per_class.append(w[rows, u].mean() if rows else torch.tensor(0.0, dtype=S.dtype))
            out["class"].append(torch.stack(per_class))
    result = {
        "average": torch.stack(out["average"]),
        "rollout": torch.stack(out["rollout"]) if rollout else None,
        "effective_sample_size": torch.stack(out["ess"]),
        "active_fraction": torch.stack(out["active"]),
        "position_share": torch.stack(out["position"]),
        "class_weight": torch.stack(out["class"]) if labels is not None else None,
        "dead": torch.tensor(out["dead"]),
        "signal_mean": S.mean(0),
        "signal_max": S.max(0).values,
        "signals": S,  # (W, H), in the order of ``windows``
        "mean_window": X.mean(0),
        "mean_rollout": torch.stack(predictions).mean(0) if rollout else None,
    }
    return result
