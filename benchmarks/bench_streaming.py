"""Peak memory of a loader probe as the probe grows: it must grow with the batch, not the probe.

Each configuration runs in a fresh process (peak RSS cannot be reset), with
a synthetic loader that makes each batch on the fly (seeded), so the probe's
data never exists whole: the 169-unit RNN of the demos, 28 x 28 sequences,
L = R = 10, batches of 500 sequences. Prints the peak memory above the
process's state just before ``compute_unit_features`` for ``--sequences``
and 10x as many, per weighting, and the ratio (targets: relu < 1.2x; top
grows only by its per-unit candidate set, about ``top_fraction`` of the
windows, which is printed too). A tensor probe of the same sizes is shown
for contrast. The loader runs again with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_``), which takes the heap's fragmentation out of
the peak: by default the peak of 10x more batches is the highest of more
draws of a per-batch peak that varies by tens of MB with the heap's state.

    python benchmarks/bench_streaming.py [--sequences 2000] [--device cpu]
"""

import argparse
import json
import os
import resource
import subprocess
import sys

RELU_TARGET = 1.2


class SyntheticLoader:
    """``count`` sequences in batches of ``batch`` made on the fly: never held whole."""

    def __init__(self, count, batch, length=28, size=28):
        self.count, self.batch, self.length, self.size = count, batch, length, size

    def __iter__(self):
        import torch

        for i, start in enumerate(range(0, self.count, self.batch)):
            n = min(self.batch, self.count - start)
            yield torch.rand(n, self.length, self.size, generator=torch.Generator().manual_seed(i))


def measure(kind, count, weighting, device):
    """Runs in a child process: peak RSS growth (MB) of one compute_unit_features call."""
    import torch
    from torch import nn

    import tensorboard_rnn_units as rnn_units

    torch.manual_seed(0)
    rnn = nn.RNN(28, 169, batch_first=True).to(device)
    head = nn.Sequential(nn.Linear(169, 28), nn.Sigmoid()).to(device)
    loader = SyntheticLoader(count, 500)
    probe = rnn_units.Probe(loader if kind == "loader" else torch.cat(list(loader)), window=10)
    before = _peak_mb()
    features = rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=10, weighting=weighting,
                                               batch_size=8192)
    assert features.num_windows == count * 19
    return _peak_mb() - before


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# glibc's heap: by default large blocks come from a heap whose peak varies with how freed blocks
# fragment it (its mmap threshold rises as blocks are freed); with the threshold fixed, every large
# block is returned to the system when freed, so the peak is the data's own.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def child(args, env=None):
    """One measurement in a fresh process (with ``env`` added to its environment)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True, check=True,
        env=None if env is None else {**os.environ, **env},
    ).stdout
    return float(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(measure(*json.loads(args.child)))
        return
    small, large = args.sequences, 10 * args.sequences
    print(f"Peak memory growth of compute_unit_features (MB), 169 units, L = R = 10, "
          f"{small} vs {large} sequences of 28 x 28 ({args.device})")
    print(f"{'probe':<8} {'weighting':<10} {small:>10} {large:>10} {'ratio':>7}  target")
    rows = [("loader", None), ("tensor", None), ("loader", FIXED_MMAP_THRESHOLD)]
    for kind, env in rows:
        if env:
            print(f"and with {' '.join(f'{k}={v}' for k, v in env.items())} (glibc returns every large block "
                  "when freed: the peak is the data's, not the heap's fragmentation):")
        for weighting in ("relu", "top"):
            a = child([kind, small, weighting, args.device], env)
            b = child([kind, large, weighting, args.device], env)
            if kind == "tensor":
                target = "(contrast: the probe itself is in memory)"
            elif weighting == "relu":
                target = f"< {RELU_TARGET}x: {'met' if b < RELU_TARGET * a else 'NOT met'}"
            else:
                candidates = 0.02 * large * 19 * 169 * 4 / 2**20
                target = (f"grows by at most its candidate set (~{candidates:.0f} MB of float32 signals at {large}, "
                          f"let go after the first pass): {'met' if b - a <= candidates + 1 else 'NOT met'}")
            print(f"{kind:<8} {weighting:<10} {a:>10.0f} {b:>10.0f} {b / a:>6.2f}x  {target}")


if __name__ == "__main__":
    main()
