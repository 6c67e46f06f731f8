"""Serving a large layer: disk per step, TensorBoard's memory, route latency.

Writes ``--steps`` logged steps of a ``--units``-unit RNN (L = R = 10 rows of
D = 28, 10 classes, both weightings; issue 7's 4,096-unit case by default)
with ``add_unit_features``, then runs the real ``tensorboard`` with each
loader and measures, once every step is loaded:

- bytes on disk per step against the float16 size of its arrays (target <= 1.1x);
- resident memory of TensorBoard and its data server together (target < 2 GB);
- ``/unit`` (one unit over every step, cold cache and warm; target < 1 s at
  500 steps) and ``/features`` of 256 units (target < 100 ms), with all
  steps served and with 500 of them (``--samples_per_plugin``);
- ``/drift`` and ``/similarity`` (every step's activation sample; target < 1 s).

Each line prints the measurement beside its target and their ratio. The
defaults write about 10 GB to ``--logdir`` (a temporary folder, removed
after, unless given). Run: ``.venv/bin/python benchmarks/bench_serve.py``.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse

import torch
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import support  # noqa: E402  (the real-tensorboard helpers of the tests)

import tensorboard_rnn_units as rnn_units  # noqa: E402

TAG = "rnn/units"
GB = 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--logdir", help="write here and keep it, or reuse what an earlier run wrote there "
                        "(default: a temporary folder)")
    parser.add_argument("--loaders", nargs="+", default=["rustboard", "python"], choices=["rustboard", "python"])
    args = parser.parse_args()

    logdir = args.logdir or tempfile.mkdtemp(prefix="bench_serve_")
    try:
        features = write(logdir, args.units, args.steps)
        disk(logdir, features, args.steps)
        for loader in args.loaders:
            serve(logdir, loader == "rustboard", args.units, args.steps)
            # The latency targets are for 500 steps: serve that many of them.
            serve(logdir, loader == "rustboard", args.units, min(args.steps, 500))
    finally:
        if not args.logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def write(logdir, units, steps):
    """Logs ``steps`` steps, cycling through the features of 3 seeded models."""
    generator = torch.Generator().manual_seed(0)
    sequences = torch.rand(20, 28, 28, generator=generator)
    labels = torch.arange(20) % 10
    probe = rnn_units.Probe(sequences, window=10, labels=labels)
    variants = []
    started = time.perf_counter()
    for seed in range(3):
        torch.manual_seed(seed)
        rnn, head = torch.nn.RNN(28, units, batch_first=True), torch.nn.Linear(units, 28)
        variants.append(rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=10))
    computed = time.perf_counter() - started
    if os.path.isdir(os.path.join(logdir, "run")):
        print(f"reusing the steps already logged in {logdir}")
        return variants[0]
    started = time.perf_counter()
    with SummaryWriter(os.path.join(logdir, "run")) as writer:
        for step in range(steps):
            rnn_units.add_unit_features(writer, TAG, variants[step % 3], global_step=step)
    print(f"{units} units: 3 models measured in {computed:.1f} s; "
          f"{steps} steps written in {time.perf_counter() - started:.1f} s")
    return variants[0]


def disk(logdir, features, steps):
    """Bytes per step (data files and event records) against the arrays' float16 size."""
    run = os.path.join(logdir, "run")
    total = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(run) for name in names)
    _, arrays = support.decode_logged_step(
        list(rnn_units.rnn_units_pb(TAG, features).value[0].tensor.string_val)
    )
    float16 = sum(array.size * 2 for array in arrays.values())
    per_step = total / steps
    print(f"disk per step: {per_step / 1e6:.2f} MB; float16 size of the arrays {float16 / 1e6:.2f} MB; "
          f"ratio {per_step / float16:.3f}x (target <= 1.1x)")


def serve(logdir, load_fast, units, steps):
    """Measures TensorBoard serving ``steps`` of the logged steps."""
    name = f"{'rustboard' if load_fast else 'python'}, {steps} steps"
    started = time.perf_counter()
    samples = ("--samples_per_plugin", f"rnn_units={steps}")
    with support.tensorboard(logdir, load_fast, extra_args=samples, timeout=600) as base_url:
        route = lambda path, **params: f"{base_url}/data/plugin/rnn_units{path}?{urllib.parse.urlencode(params)}"

        def loaded():
            status, body = support.get(route("/steps", run="run", tag=TAG))
            return status == 200 and body.count(b'"step"') == steps

        support.wait_for(loaded, 1800, interval=1, what=f"{steps} steps")
        served = [s["step"] for s in json.loads(support.get(route("/steps", run="run", tag=TAG))[1])]
        print(f"[{name}] every step loaded {time.perf_counter() - started:.1f} s after start")
        timings = {
            "/unit cold": [timed(route("/unit", run="run", tag=TAG, unit=units - 1))],
            "/unit warm": [timed(route("/unit", run="run", tag=TAG, unit=u)) for u in range(5)],
            "/features 256 units": [
                timed(route("/features", run="run", tag=TAG, step=s, units=f"{u}:{u + 256}"))
                for s, u in zip(served[:: max(1, steps // 20)], range(0, units, 256))
            ],
        }
        timed(route("/features", run="run", tag=TAG, step=served[-1]))  # one whole step too
        for path in ("/drift", "/similarity"):  # every step's activation sample, then cached results
            timings[f"{path} cold"] = [timed(route(path, run="run", tag=TAG))]
            timings[f"{path} warm"] = [timed(route(path, run="run", tag=TAG)) for _ in range(3)]
        targets = [("/unit cold", 1.0), ("/unit warm", 1.0), ("/features 256 units", 0.1),
                   ("/drift cold", 1.0), ("/drift warm", 1.0), ("/similarity cold", 1.0), ("/similarity warm", 1.0)]
        for label, target in targets:
            seconds = statistics.median(timings[label])
            print(f"[{name}] {label}: {seconds * 1e3:.0f} ms (median of {len(timings[label])}); "
                  f"target {target * 1e3:.0f} ms; ratio {seconds / target:.2f}x")
        rss = resident_bytes(tensorboard_pid(base_url))
        print(f"[{name}] resident memory, TensorBoard and data server: {rss / GB:.2f} GB; "
              f"target 2 GB; ratio {rss / (2 * GB):.2f}x")


def timed(url):
    started = time.perf_counter()
    status, body = support.get(url, timeout=120)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"{url}: {status} {body[:300]!r}")
    return elapsed


def tensorboard_pid(base_url):
    """The pid of the ``tensorboard`` process listening on ``base_url``'s port."""
    port = base_url.rsplit(":", 1)[1]
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"tensorboard.main" in command and port.encode() in command:
            return int(pid)
    raise RuntimeError(f"no tensorboard process on port {port}")


def resident_bytes(pid):
    """VmRSS of ``pid`` and all its descendants (RustBoard's data server is a child)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        with open(f"/proc/{current}/status") as f:
            total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return total


if __name__ == "__main__":
    main()
