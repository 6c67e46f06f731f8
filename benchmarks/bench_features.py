"""compute_unit_features vs the bare torch work it wraps, side by side.

The bare work: the module's own fused forward over every probe sequence, R
readout/feedback steps from every window's state, and the weighted sums of
windows and rollouts for one weighting. Prints seconds and the ratio, and
the time of ``weighting="top"`` alone against ``"relu"`` alone (target: at
most 0.8x, since ``top`` weighs only a few windows per unit).

    python benchmarks/bench_features.py [--device cuda] [--units 169] [--sequences 10000] [--threads N]
"""

import argparse
import time

import torch
from torch import nn

import tensorboard_rnn_units as rnn_units

TOP_TARGET = 0.8  # weighting="top" alone at most 0.8x the time of exact "relu" with every rollout


def bare_torch(rnn, head, x, window, rollout):
    with torch.no_grad():
        out, _ = rnn(x)  # (N, T, H)
        n, t, d = x.shape
        states = out[:, window - 1 :].reshape(-1, out.shape[-1])  # every window's end state
        windows = x.unfold(1, window, 1).transpose(2, 3).reshape(states.shape[0], -1)
        weights = states.clamp_min(0)
        h, preds = states[None].contiguous(), []
        for r in range(rollout):
            y = torch.sigmoid(head(h[0]))
            preds.append(y)
            if r + 1 < rollout:
                _, h = rnn(y[:, None], h)
        preds = torch.stack(preds, 1).reshape(states.shape[0], -1)
        return weights.T @ windows, weights.T @ preds


def timed(fn, device, repeat):
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--units", type=int, default=169)
    parser.add_argument("--sequences", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    T = D = 28
    L = R = 10
    rnn = nn.RNN(D, args.units, batch_first=True).to(device)
    head = nn.Linear(args.units, D).to(device)
    x = torch.rand(args.sequences, T, D)
    probe = rnn_units.Probe(x, L)
    readout = lambda h: torch.sigmoid(head(h))
    xd = x.to(device)

    bare = timed(lambda: bare_torch(rnn, head, xd, L, R), device, args.repeat)
    print(f"device={device} units={args.units} sequences={args.sequences} T=D={T} L=R={L} "
          f"threads={torch.get_num_threads()}")
    print(f"bare torch (fused forward + rollouts + sums, one weighting): {bare:.3f} s")
    weightings = ("relu", "top", ("top", "relu"))
    seconds = dict.fromkeys(weightings, float("inf"))
    for _ in range(args.repeat):  # interleaved, so a busy spell on a shared machine hits all alike
        for weighting in weightings:
            seconds[weighting] = min(seconds[weighting], timed(
                lambda: rnn_units.compute_unit_features(rnn, probe, readout=readout, model=head, rollout=R, weighting=weighting),
                device, 1,
            ))
    for weighting in weightings:
        print(f"compute_unit_features weighting={weighting}: {seconds[weighting]:.3f} s  "
              f"ratio {seconds[weighting] / bare:.2f}x")
    top_ratio = seconds["top"] / seconds["relu"]
    print(f"top alone / relu alone (rollout R={R} on every window for relu): {top_ratio:.2f}x "
          f"(target <= {TOP_TARGET}x: {'met' if top_ratio <= TOP_TARGET else 'NOT met'})")
    if device.type != "cpu":
        # Same features on the CPU: the device path must not change the picture.
        on_device = rnn_units.compute_unit_features(rnn, probe, readout=readout, rollout=R, weighting="top")
        rnn.cpu(), head.cpu()
        on_cpu = rnn_units.compute_unit_features(rnn, probe, readout=readout, rollout=R, weighting="top")
        diff = (on_device["top"].average - on_cpu["top"].average).abs().max().item()
        print(f"max |average({device}) - average(cpu)| = {diff:.2e}")


if __name__ == "__main__":
    main()
