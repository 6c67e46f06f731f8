"""compute_unit_features vs the bare torch work it wraps, side by side.

The bare work: the module's own fused forward over every probe sequence, R
readout/feedback steps from every window's state, and the weighted sums of
windows and rollouts for one weighting. Prints seconds and the ratio, and
the time of ``weighting="top"`` alone against ``"relu"`` alone (target: at
most 0.8x, since ``top`` weighs only a few windows per unit). How many
windows ``top`` must roll out depends on the model: about 95% on the default
uniform noise and random model, fewer on MNIST with a trained one
(``--mnist-dir``).

    python benchmarks/bench_features.py [--device cuda] [--units 169] [--sequences 10000] [--threads N]
        [--mnist-dir ../shared/data/mnist [--train-steps 300]]
"""

import argparse
import os
import sys
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


def mnist_sequences(mnist_dir, count):
    """The first ``count`` MNIST images as ``(N, 28, 28)`` rows in [0, 1] (the demo's loader)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from demo import data

    return torch.as_tensor(data.load_mnist(mnist_dir, download=False).sequences[:count])


def train(rnn, head, x, steps, batch_size=64):
    """The demo's task: predict each next row (Adam, binary cross-entropy)."""
    generator = torch.Generator(x.device).manual_seed(0)
    optimizer = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(steps):
        rows = x[torch.randint(len(x), (batch_size,), device=x.device, generator=generator)]
        out, _ = rnn(rows[:, :-1])
        loss = nn.functional.binary_cross_entropy_with_logits(head(out), rows[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def top_weighted_fraction(rnn, x, window, fraction=0.02):
    """Fraction of windows in some unit's top ``fraction`` (the windows ``top`` alone must roll out)."""
    with torch.no_grad():
        out, _ = rnn(x)
        before = torch.cat([out.new_zeros(out.shape[0], 1, out.shape[2]), out[:, :-1]], 1)
        pre = x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + before @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        signals = pre[:, window - 1 :].reshape(-1, out.shape[2])
        k = max(1, int(fraction * signals.shape[0]))
        threshold = signals.topk(k, dim=0).values[-1]
        return (signals > threshold).any(1).float().mean().item()


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
    parser.add_argument("--mnist-dir", help="MNIST images (the demo's loader) instead of uniform noise, and the "
                        "model trained on them first (a random model spreads top over almost every window)")
    parser.add_argument("--train-steps", type=int, default=300, help="with --mnist-dir (default: %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # cuDNN's fused RNN (the bare work) would run in TF32 on recent GPUs, ours in float32: the same precision for both.
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    T = D = 28
    L = R = 10
    rnn = nn.RNN(D, args.units, batch_first=True).to(device)
    head = nn.Linear(args.units, D).to(device)
    if args.mnist_dir:
        x = mnist_sequences(args.mnist_dir, args.sequences)
        train(rnn, head, x.to(device), args.train_steps)
    else:
        x = torch.rand(args.sequences, T, D)
    probe = rnn_units.Probe(x, L)
    readout = lambda h: torch.sigmoid(head(h))
    xd = x.to(device)

    bare = timed(lambda: bare_torch(rnn, head, xd, L, R), device, args.repeat)
    print(f"device={device} units={args.units} sequences={args.sequences} T=D={T} L=R={L} "
          f"threads={torch.get_num_threads()} data={'MNIST, model trained %d steps' % args.train_steps if args.mnist_dir else 'uniform noise, random model'} "
          f"load average {os.getloadavg()[0]:.1f}")
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
    print(f"windows in some unit's top 2% (rolled out by top alone): {100 * top_weighted_fraction(rnn, xd, L):.0f}%")
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
