"""What logging the units adds to each demo's training wall time.

Runs the demo's own ``main`` in-process (``python -m demo``'s code, its
default settings unless told otherwise) three times per repeat, after one
logged warm-up run that is not counted, in an order rotated from repeat
to repeat: with the demo's logging as it is (in the background,
``add_rnn_units(..., background=True)``), with
``tensorboard_rnn_units.add_rnn_units`` replaced by a stub that returns the
features of the run before (so nothing after training notices), and with
``--no-background`` (in the training loop). The training wall time is the
time spent in the demo's ``train`` (the whole ``main`` when the demo has
none), including the wait for the last background step. The overhead is
the median over the repeats of each run's time over the run without
logging of its repeat (pairs taken minutes apart on a shared machine
differ by up to 15% with no logging at all; neighbours less); the best of
each kind is printed too. Also prints the time spent inside
``add_rnn_units`` itself (blocking the training loop). Target: at most 5%
at a cadence of at least 20 logged steps.

    python benchmarks/bench_overhead.py [--data digits text] [--repeat 3] [--threads N] [--profile [DATA ...]] [-- DEMO_ARGS]

``--profile [DATA ...]`` then logs a demo's units (digits by default)
``--profile-steps`` times on its model, in the calling thread, and prints
where the time goes (ms per logged step, cProfile cumulative times of the
package's parts).
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # the demo's progress bar, before tqdm is imported

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

import tensorboard_rnn_units as rnn_units  # noqa: E402
from demo import __main__ as demo_main  # noqa: E402

TARGET_OVERHEAD = 0.05
TARGET_LOGGED_STEPS = 20


class _Patched:
    """Within ``with``: ``add_rnn_units`` timed (``stub=False``) or replaced by
    a stub returning ``features``; the demo's ``train`` timed when it has one."""

    def __init__(self, stub, features=None):
        self.stub, self.features = stub, features
        self.calls, self.log_seconds, self.log_cpu, self.last = 0, 0.0, 0.0, None
        self.train_seconds = self.train_cpu = None

    def __enter__(self):
        self.real_add, self.real_train = rnn_units.add_rnn_units, getattr(demo_main, "train", None)

        def add(*args, **kwargs):
            self.calls += 1
            if self.stub:
                return self.features
            start, cpu = time.perf_counter(), time.process_time()
            self.last = self.real_add(*args, **kwargs)
            self.log_seconds += time.perf_counter() - start
            self.log_cpu += time.process_time() - cpu
            return self.last

        def train(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return self.real_train(*args, **kwargs)
            finally:
                self.train_seconds = time.perf_counter() - start
                self.train_cpu = time.process_time() - cpu

        rnn_units.add_rnn_units = add
        if self.real_train is not None:
            demo_main.train = train
        return self

    def __exit__(self, *exc):
        rnn_units.add_rnn_units = self.real_add
        if self.real_train is not None:
            demo_main.train = self.real_train


def run_demo(argv, stub, features=None):
    """One in-process run of the demo: ``(wall seconds, CPU seconds of training, _Patched)``."""
    logdir = tempfile.mkdtemp(prefix="bench_overhead_")
    try:
        with _Patched(stub, features) as patched, contextlib.redirect_stdout(io.StringIO()):
            start, cpu = time.perf_counter(), time.process_time()
            demo_main.main([*argv, "--logdir", logdir])
            total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    if patched.calls == 0:
        raise SystemExit(
            f"python -m demo {' '.join(argv)} never called tensorboard_rnn_units.add_rnn_units "
            "through the package: this benchmark cannot switch its logging off"
        )
    if patched.train_seconds is None:
        return total, total_cpu, patched
    return patched.train_seconds, patched.train_cpu, patched


def demo_supports(data):
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            demo_main.parse_args(["--data", data])
        return True
    except SystemExit:
        return False


MODES = {"background": [], "in the loop": ["--no-background"]}


def measure(data, extra, repeat):
    """Per repeat, interleaved: a run with each of ``MODES``' logging and one
    without, in an order rotated from repeat to repeat (a run's place in
    the sequence must not favour one kind); each mode's ``(wall, cpu, time
    in add_rnn_units, logged steps)`` and the runs without."""
    argv = ["--data", data, *extra]
    # The stub returns a logged run's last features (a Future, as the demo's default background
    # logging returns), so that nothing after training notices.
    last = run_demo([*argv, *MODES["background"]], stub=False)[2].last
    kinds = [None, *MODES]  # None: without logging
    without, runs = [], {mode: [] for mode in MODES}
    for i in range(repeat):
        for kind in kinds[i % len(kinds):] + kinds[: i % len(kinds)]:
            if kind is None:
                without.append(run_demo(argv, stub=True, features=last)[:2])
                continue
            wall, cpu, logged = run_demo([*argv, *MODES[kind]], stub=False)
            runs[kind].append((wall, cpu, logged.log_seconds, logged.calls))
    return {"data": data, "without": without, "runs": runs}


def print_overhead(results):
    print(f"{'demo':<8} {'logging':<12} {'logged steps':>12} {'with logging':>13} {'without':>9} "
          f"{'overhead (median)':>18} {'(best of each)':>15} {'blocking in add_rnn_units':>26}")
    for r in results:
        without = r["without"]
        best_without = min(w for w, _ in without)
        for mode, runs in r["runs"].items():
            ratios = sorted(run[0] / base[0] - 1.0 for run, base in zip(runs, without))
            overhead = statistics.median(ratios)
            best = min(run[0] for run in runs)
            inside = statistics.median(run[2] for run in runs) / best_without
            calls = runs[0][3]
            print(f"{r['data']:<8} {mode:<12} {calls:>12} {best:>12.2f}s {best_without:>8.2f}s "
                  f"{100 * overhead:>17.1f}% {100 * (best / best_without - 1):>14.1f}% {100 * inside:>25.1f}%")
            if mode == "background":
                ok = overhead <= TARGET_OVERHEAD and calls >= TARGET_LOGGED_STEPS
                print(f"{'':<8} target: logging adds <= 5% of the training wall time at >= 20 logged steps: "
                      f"{'met' if ok else 'NOT met'} ({100 * overhead:.1f}%, the demo's default: in the background)")
        print(f"{'':<8} each repeat (wall s, without / " + " / ".join(r["runs"]) + "): " + ", ".join(
            "/".join(f"{x:.2f}" for x in (base[0], *(runs[i][0] for runs in r["runs"].values())))
            for i, base in enumerate(without)))
        cpu = {mode: statistics.median(run[1] for run in runs) for mode, runs in r["runs"].items()}
        print(f"{'':<8} CPU seconds (median): without {statistics.median(c for _, c in without):.2f}, "
              + ", ".join(f"{mode} {value:.2f}" for mode, value in cpu.items()))
    print("overhead = training wall time with logging / without - 1: the median over the repeats of each run "
          "against the run without logging of its repeat (the target's measure), and the best run of each "
          "kind against each other; blocking = the time the training loop spent inside add_rnn_units "
          "(in the background: copying the model) / training without logging.")


# (label, "module.qualified.name") of the parts of one logged step; missing ones print "-".
PROFILE_PARTS = [
    ("add_rnn_units (everything)", "summary.add_rnn_units"),
    ("  compute_unit_features", "features.compute_unit_features"),
    ("    forward passes over the probe", "windows.WindowWalker.batches"),
    ("    top: each unit's largest signals", "sums.Sums.candidates"),
    ("    top: thresholds", "sums.Sums.threshold"),
    ("    rollouts", "windows.roll_out"),
    ("    sums (weights @ windows, by position/class)", "sums.Sums.add"),
    ("    result (to CPU, divide)", "sums.Sums.result"),
    ("  writing (encode + files + event)", "summary._write"),
    ("    step_arrays (float16 conversion etc.)", "summary.step_arrays"),
    ("      analysis.gram (sample_gram)", "analysis.gram"),
    ("    analysis.change (activation_change)", "analysis.change"),
    ("    metadata.encode_step (header, chunks)", "metadata.encode_step"),
    ("    event record (FileWriter.add_summary)", "torch.utils.tensorboard.writer.FileWriter.add_summary"),
]


def _code_key(dotted):
    """The pstats key ``(file, line, name)`` of a function named ``module.qualified.name``
    (the package's modules by their short name), or ``None`` when it does not exist."""
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module if module.startswith("torch") else f"tensorboard_rnn_units.{module}")
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name, None)
        code = getattr(obj, "__code__", None)
        return None if code is None else (code.co_filename, code.co_firstlineno, code.co_name)
    return None


def profile(data, steps, extra):
    """Logs ``data``'s demo units ``steps`` times, each under its own cProfile,
    and prints each part's cumulative ms per logged step: the best and the
    median over the steps (the best is the steadier on a shared machine)."""
    args = demo_main.parse_args(["--data", data, *extra, "--no-background"])
    dataset = demo_main.load_data(args)
    torch.manual_seed(args.seed)
    if hasattr(demo_main, "make_model"):
        model = demo_main.make_model(dataset, args).to(args.device)
        probe = demo_main.make_probe(dataset, args, model)
    else:
        model = demo_main.RowPredictor(dataset.sequences.shape[2], args.hidden, args.num_layers).to(args.device)
        probe = demo_main.make_probe(dataset, args)
    from torch.utils.tensorboard import SummaryWriter

    keys = {label: _code_key(dotted) for label, dotted in PROFILE_PARTS}
    logdir = tempfile.mkdtemp(prefix="bench_overhead_profile_")
    plain, parts, profiles = [], {label: [] for label, _ in PROFILE_PARTS}, []
    try:
        with SummaryWriter(logdir) as writer:
            for step in range(2):  # warm-up, and the second step logs activation_change
                demo_main.log_units(writer, model, probe, args, step)
            for step in range(2, 2 + steps):
                start = time.perf_counter()
                demo_main.log_units(writer, model, probe, args, step)
                plain.append(time.perf_counter() - start)
            for step in range(2 + steps, 2 + 2 * steps):
                profiler = cProfile.Profile()
                profiler.enable()
                demo_main.log_units(writer, model, probe, args, step)
                profiler.disable()
                profiles.append(profiler)
                stats = pstats.Stats(profiler).stats
                for label, key in keys.items():
                    parts[label].append(stats[key][3] if key in stats else None)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    plain.sort()
    print(f"\nProfile of the {data} demo's logging: {probe.num_windows} windows, {args.hidden} units, "
          f"L={args.window} R={args.rollout}, weighting {' '.join(args.weighting)}, "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}")
    print(f"one logged step without the profiler: best {1000 * plain[0]:.1f} ms, median "
          f"{1000 * plain[len(plain) // 2]:.1f} ms ({steps} steps)")
    print(f"{'part (cProfile cumulative, ms per logged step)':<52} {'best':>8} {'median':>8}")
    for label, _ in PROFILE_PARTS:
        values = sorted(v for v in parts[label] if v is not None)
        if not values:
            print(f"{label:<52} {'-':>8} {'-':>8}")
            continue
        print(f"{label:<52} {1000 * values[0]:>8.1f} {1000 * values[len(values) // 2]:>8.1f}")
    total = pstats.Stats(profiles[0])
    for profiler in profiles[1:]:
        total.add(profiler)
    out = io.StringIO()
    total.stream = out
    total.sort_stats("tottime").print_stats(15)
    print(f"\nTop functions by own time (all {steps} profiled steps together):")
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=None,
                        help="demos to measure (default: digits, and text when the demo offers it)")
    parser.add_argument("--repeat", type=int, default=3, help="runs without logging and with each kind of logging")
    parser.add_argument("--profile", nargs="*", metavar="DATA",
                        help="then profile the logging of these demos (default: digits)")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--no-overhead", action="store_true", help="only the profile")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a busy machine)")
    parser.add_argument("demo_args", nargs="*", help="after --: passed to the demo (e.g. --log-every 100)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or [d for d in ("digits", "text") if demo_supports(d)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (other processes share these CPUs when it is above 0)")
    if not args.no_overhead:
        results = []
        for name in data:
            if not demo_supports(name):
                print(f"python -m demo does not accept --data {name} yet: skipped")
                continue
            results.append(measure(name, args.demo_args, args.repeat))
        print_overhead(results)
    if args.profile is not None:
        for name in args.profile or ["digits"]:
            profile(name, args.profile_steps, args.demo_args)


if __name__ == "__main__":
    main()
