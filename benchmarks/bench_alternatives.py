"""This package against what users would do instead, per logged step.

The demo's setting: its 169-unit ``nn.RNN`` (``demo.model.RowPredictor``)
reading images row by row, on the demo's MNIST probe (2,000 test images,
L = R = 10) when the MNIST files are there, else on the digits demo's probe
(all 1,797 8x8 digits, L = R = 4). The model is untrained: the work does not
depend on the weights.

- **ours**: ``tensorboard_rnn_units.add_rnn_units`` with its default
  weightings (``top`` and ``relu``), with every weighting as the demo logs
  them, and with ``weighting="relu"`` only; each with rollouts, per-unit
  statistics, exemplars and the activation sample for the comparisons.
- **by hand + add_image**: what a user would write: the RNN's own fused
  forward over the probe, each unit's pre-activation recomputed from the
  hidden states, batched rollouts, the ``relu``-weighted averages as two
  matrix products, the grid rendered as one image (a cell per unit, window
  above rollout) and logged with ``SummaryWriter.add_image``. Checked equal
  to ours (``relu``) before timing, so both do the same work.
- **loop**: the 2016 code's shape: per window a forward pass from the zero
  state over the window's prefix, a rollout, and a Python loop over units
  adding each one's weighted window and rollout. Timed on the first
  sequences' windows (checked equal to ours on those; the best of
  ``--repeat`` runs, interleaved with the others' steps) and scaled
  linearly to the whole probe. Target: ours
  at least 100x faster.

Times are the best of ``--repeat`` logged steps; bytes are what a step adds
to the run's folder (event file plus, for ours, its data file).

    python benchmarks/bench_alternatives.py [--data mnist|digits] [--mnist-dir DIR] [--repeat 3]
        [--threads N] [--device cuda]
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tensorboard_rnn_units as rnn_units  # noqa: E402
from tensorboard_rnn_units import metadata  # noqa: E402
from demo import data as demo_data  # noqa: E402
from demo.model import RowPredictor  # noqa: E402

TARGET_LOOP_RATIO = 100
SETTINGS = {  # as the demo's DATA_DEFAULTS
    "mnist": dict(window=10, rollout=10, probe_size=2000),
    "digits": dict(window=4, rollout=4, probe_size=None),
}
DEFAULT_MNIST_DIRS = (os.path.join(REPO, "..", "shared", "data", "mnist"), os.path.join(REPO, "data", "mnist"))


def load(args):
    """``(dataset, setting)``: MNIST when asked for or found, else the digits."""
    if args.data in (None, "mnist"):
        dirs = [args.mnist_dir] if args.mnist_dir else DEFAULT_MNIST_DIRS
        for directory in dirs:
            try:
                return demo_data.load_mnist(directory, download=False), SETTINGS["mnist"]
            except (FileNotFoundError, ValueError) as e:
                reason = e
        if args.data == "mnist":
            raise SystemExit(f"bench_alternatives: no MNIST files: {reason}")
        print(f"No MNIST files in {' or '.join(dirs)}: using the digits demo's setting.")
    return demo_data.load_digits_rows(), SETTINGS["digits"]


def demo_probe(dataset, setting):
    """The demo's probe: ``probe_size`` images drawn with seed 0 (all when None), labelled."""
    count = len(dataset.sequences)
    chosen = np.sort(np.random.default_rng(0).permutation(count)[: setting["probe_size"] or count])
    return rnn_units.Probe(
        dataset.sequences[chosen], window=setting["window"], labels=dataset.labels[chosen],
        class_names=list(dataset.class_names), display="image_rows",
    )


# ---------------------------------------------------------------- by hand


def by_hand_features(model, x, window, rollout):
    """``(average (H, L, D), rollout (H, R, D))``, relu-weighted, as a user would batch it."""
    rnn = model.rnn
    n, t, d = x.shape
    with torch.no_grad():
        hidden, _ = rnn(x)  # (N, T, H)
        before = torch.cat([hidden.new_zeros(n, 1, hidden.shape[2]), hidden[:, :-1]], 1)
        # nn.RNN's pre-activation (what goes into tanh) at every step.
        pre = x @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + before @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        h = hidden.shape[2]
        weights = pre[:, window - 1 :].clamp_min(0).reshape(-1, h)  # one row per window
        windows = x.unfold(1, window, 1).transpose(2, 3).reshape(-1, window * d)
        state = hidden[:, window - 1 :].reshape(1, -1, h).contiguous()
        predictions = []
        for r in range(rollout):
            y = model.readout(state[0])
            predictions.append(y)
            if r + 1 < rollout:
                _, state = rnn(y[:, None], state)
        predictions = torch.stack(predictions, 1).reshape(-1, rollout * d)
        total = weights.sum(0).clamp_min(1e-12)[:, None]
        average = (weights.T @ windows / total).reshape(h, window, d)
        rolled = (weights.T @ predictions / total).reshape(h, rollout, d)
    return average, rolled


def grid_image(average, rolled):
    """``(1, height, width)`` in [0, 1]: one cell per unit on a square grid,
    the window above the rollout, one-pixel grey gaps."""
    average, rolled = average.cpu(), rolled.cpu()
    h, l, d = average.shape
    cells = torch.cat([average, torch.full((h, 1, d), 0.5), rolled], 1).clamp(0, 1)  # (H, L+1+R, D)
    side = math.ceil(math.sqrt(h))
    padded = torch.full((side * side, cells.shape[1] + 1, d + 1), 0.5)
    padded[:h, : cells.shape[1], :d] = cells
    rows, cols = padded.shape[1:]
    image = padded.reshape(side, side, rows, cols).permute(0, 2, 1, 3).reshape(side * rows, side * cols)
    return image[None]


def log_by_hand(writer, model, x, window, rollout, step):
    average, rolled = by_hand_features(model, x, window, rollout)
    writer.add_image("rnn/units_relu", grid_image(average, rolled), step, dataformats="CHW")


# ---------------------------------------------------------------- the 2016 loop


def loop_features(model, x, window, rollout):
    """``(average (H, L, D), rollout (H, R, D))``, relu-weighted, one window and one unit at a time."""
    rnn = model.rnn
    n, t, d = x.shape
    h = rnn.hidden_size
    w_ih, b_ih = (p.detach().cpu().numpy() for p in (rnn.weight_ih_l0, rnn.bias_ih_l0))
    w_hh, b_hh = (p.detach().cpu().numpy() for p in (rnn.weight_hh_l0, rnn.bias_hh_l0))
    average = np.zeros((h, window, d))
    rolled = np.zeros((h, rollout, d))
    total = np.zeros(h)
    with torch.no_grad():
        for i in range(n):
            for end in range(window, t + 1):
                out, state = rnn(x[i : i + 1, :end])  # from the zero state over the prefix
                previous = out[0, end - 2].cpu().numpy() if end >= 2 else np.zeros(h, np.float32)
                pre = w_ih @ x[i, end - 1].cpu().numpy() + b_ih + w_hh @ previous + b_hh
                seen = x[i, end - window : end].cpu().numpy()
                predictions = []
                for r in range(rollout):
                    y = model.readout(state[-1])
                    predictions.append(y[0].cpu().numpy())
                    if r + 1 < rollout:
                        _, state = rnn(y[:, None], state)
                predictions = np.stack(predictions)
                for u in range(h):
                    weight = max(float(pre[u]), 0.0)
                    if weight > 0:
                        average[u] += weight * seen
                        rolled[u] += weight * predictions
                        total[u] += weight
    total = np.maximum(total, 1e-12)[:, None, None]
    return torch.from_numpy(average / total), torch.from_numpy(rolled / total)


# ---------------------------------------------------------------- measuring


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def per_step(logs, repeat):
    """``[(best seconds of one logged step, bytes per step)]`` of each ``log(writer, step)``, each
    into a fresh run; the repeats interleaved, so a busy spell on a shared machine hits all alike
    (the loop too: it is one of the ``logs``, writing nothing)."""
    logdirs = [tempfile.mkdtemp(prefix="bench_alternatives_") for _ in logs]
    try:
        writers = [SummaryWriter(logdir) for logdir in logdirs]
        before = []
        for log, writer, logdir in zip(logs, writers, logdirs):
            log(writer, 0)  # warm-up, and the first step's one-off work (folders, the event file)
            writer.flush()
            before.append(folder_bytes(logdir))
        times = [[] for _ in logs]
        for step in range(1, repeat + 1):
            for log, writer, spent in zip(logs, writers, times):
                start = time.perf_counter()
                log(writer, step)
                writer.flush()
                spent.append(time.perf_counter() - start)
        for writer in writers:
            writer.close()
        return [(min(spent), (folder_bytes(logdir) - size) / repeat)
                for spent, logdir, size in zip(times, logdirs, before)]
    finally:
        for logdir in logdirs:
            shutil.rmtree(logdir, ignore_errors=True)


def check_close(name, ours, theirs, tolerance=1e-4):
    error = (ours.double().cpu() - theirs.double().cpu()).abs().max().item()
    scale = ours.double().abs().max().item()
    if error > tolerance * max(scale, 1.0):
        raise SystemExit(f"{name}: differs from ours by {error:.2e} (scale {scale:.2e}): not the same work")
    return error


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SETTINGS), help="default: mnist when its files are found, else digits")
    parser.add_argument("--mnist-dir", help=f"default: the first of {', '.join(DEFAULT_MNIST_DIRS)} with the files")
    parser.add_argument("--hidden", type=int, default=169)
    parser.add_argument("--repeat", type=int, default=3, help="logged steps timed (best kept)")
    parser.add_argument("--loop-sequences", type=int, default=10, help="sequences the loop is timed on")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    parser.add_argument("--device", default="cpu", help="where the model runs, for all three (default: cpu)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset, setting = load(args)
    window, rollout = setting["window"], setting["rollout"]
    probe = demo_probe(dataset, setting)
    d = probe.input_size
    torch.manual_seed(0)
    # cuDNN's RNN (by hand, the loop) would run in TF32 on recent GPUs, ours in float32: the same precision for all.
    torch.backends.cudnn.allow_tf32 = False
    model = RowPredictor(d, args.hidden).to(args.device).eval()
    x = probe.sequences.to(args.device)
    print(f"{dataset.source}")
    print(f"probe: {probe.num_sequences} sequences, {probe.num_windows} windows; nn.RNN with {args.hidden} units, "
          f"L={window}, R={rollout}; torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}")

    # Same work? By hand and the loop against ours (relu).
    ours_relu = rnn_units.compute_unit_features(model.rnn, probe, readout=model.readout, rollout=rollout,
                                                weighting="relu")["relu"]
    hand_average, hand_rollout = by_hand_features(model, x, window, rollout)
    errors = [check_close("by hand (average)", ours_relu.average, hand_average),
              check_close("by hand (rollout)", ours_relu.rollout, hand_rollout)]
    few = x[: args.loop_sequences]
    few_probe = rnn_units.Probe(few.cpu(), window=window)
    few_ours = rnn_units.compute_unit_features(model.rnn, few_probe, readout=model.readout, rollout=rollout,
                                               weighting="relu")["relu"]
    loop_average, loop_rollout = loop_features(model, few, window, rollout)
    errors += [check_close("loop (average)", few_ours.average, loop_average),
               check_close("loop (rollout)", few_ours.rollout, loop_rollout)]
    print(f"same results: by hand and the loop equal ours (relu) to {max(errors):.1e} "
          f"(loop checked on {few_probe.num_windows} windows)")


    def ours(weighting):
        def log(writer, s):
            rnn_units.add_rnn_units(writer, "rnn/units", model.rnn, probe, global_step=s,
                                    readout=model.readout, rollout=rollout, weighting=weighting)
        return log

    ours_rows = [("ours: add_rnn_units, top + relu (its default)", ("top", "relu"))]
    if tuple(metadata.WEIGHTINGS) != ("top", "relu"):
        ours_rows.append((f"ours: add_rnn_units, {' + '.join(metadata.WEIGHTINGS)} (as the demo logs)",
                          tuple(metadata.WEIGHTINGS)))
    ours_rows.append(("ours: add_rnn_units, relu only", "relu"))
    logs = [ours(weighting) for _, weighting in ours_rows]
    logs.append(lambda w, s: log_by_hand(w, model, x, window, rollout, s))
    logs.append(lambda w, s: loop_features(model, few, window, rollout))  # timed on few sequences, writes nothing
    labels = [label for label, _ in ours_rows] + ["by hand (relu) + add_image of the grid"]
    *measured, (loop_seconds, _) = per_step(logs, args.repeat)
    loop_seconds *= probe.num_windows / few_probe.num_windows
    rows = [(label, *m) for label, m in zip(labels, measured)]
    rows.append((f"loop: window by window, unit by unit (relu, scaled from {few_probe.num_windows} windows)",
                 loop_seconds, None))
    base_seconds, base_bytes = rows[0][1], rows[0][2]
    print(f"\n{'per logged step':<78} {'time':>9} {'vs ours':>9} {'bytes':>11} {'vs ours':>9}")
    for label, seconds, size in rows:
        size_text = "-" if size is None else f"{size:,.0f}"
        size_ratio = "-" if size is None else f"{size / base_bytes:.3f}x"
        print(f"{label:<78} {seconds:>8.3f}s {seconds / base_seconds:>8.2f}x {size_text:>11} {size_ratio:>9}")
    print(f"('vs ours': against the first row; load average {os.getloadavg()[0]:.1f})")
    print()
    for (label, _), (_, seconds, _) in zip(ours_rows, rows):
        ratio = loop_seconds / seconds
        print(f"the loop (relu only) takes {ratio:,.0f}x the time of {label} "
              f"(target >= {TARGET_LOOP_RATIO}x: {'met' if ratio >= TARGET_LOOP_RATIO else 'NOT met'})")
    print("ours logs per step each weighting's averages and rollouts (float16), each unit's statistics, exemplars "
          "and the activation sample for the comparisons; by hand logs one 8-bit PNG of one weighting.")


if __name__ == "__main__":
    main()
