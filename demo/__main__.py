"""``python -m demo``: train the research note's row-predicting RNN on digit
images (or, with ``--data text``, a character-level LSTM on Python source)
and log what each hidden unit has learned, for TensorBoard.

An RNN reads each image one row per step and predicts the next row. Every
``--log-every`` steps (and at the first and last) it logs, with
``tensorboard_rnn_units.add_rnn_units``, every unit's weighted-average window
of ``--window`` rows and ``--rollout``-row rollout, plus the class statistics.
The run goes to ``<logdir>/<data>`` (previous events there are replaced). At
the end it prints how many units prefer each digit, how many are dead, and
how to view the run; with ``--serve`` it serves TensorBoard itself.

With ``--data text`` an LSTM reads standard-library modules one character per
step and predicts the next character (``demo/text.py``); the probe carries
per-character annotations (inside a string, a comment, brackets; the column)
and the demo prints the units most correlated with each.
"""

import argparse
import contextlib
import glob
import os
import shlex
import shutil
import sys
import threading
import time

import numpy as np
import torch
import tqdm
from torch.utils.tensorboard import SummaryWriter

import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata

from demo import data as demo_data
from demo import text as demo_text
from demo.model import CharPredictor, RowPredictor

TAG = "rnn/units"

# Per data set: 8-row digits get L = R = 4 (half an image each), 28-row
# MNIST the note's L = R = 10. Logging costs about 0.1 s (digits) and 0.7 s
# (MNIST, 2000 probe images) per step on 2 CPU cores. Text: 10 characters
# each way, TEXT_PROBE_WINDOWS windows sampled from 300 sequences of 100
# characters: about 0.4 s per step. Logging runs in the background
# (--background) on one thread while training runs on another (--threads).
DATA_DEFAULTS = {
    "digits": dict(window=4, rollout=4, steps=2000, log_every=100, probe_size=600,
                   hidden=169, batch_size=64, lr=3e-3, threads=1),
    "mnist": dict(window=10, rollout=10, steps=3000, log_every=250, probe_size=2000,
                  hidden=169, batch_size=64, lr=3e-3, threads=1),
    "text": dict(window=10, rollout=10, steps=1500, log_every=75, probe_size=300,
                 hidden=128, batch_size=32, lr=5e-3, threads=1),
}

# A text probe's windows are a sample of this many (of 300 * 91), to keep logging cheap.
TEXT_PROBE_WINDOWS = 4096


def parse_args(argv=None):
    """Parses the command line; per-data-set defaults fill unset options."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Train an RNN that reads digit images row by row (or an LSTM that reads "
        "Python source character by character) and predicts what comes next, and log what "
        "each hidden unit has learned for TensorBoard.",
    )
    add = parser.add_argument
    add("--data", choices=sorted(DATA_DEFAULTS), default="digits",
        help="digits (default): scikit-learn's embedded 8x8 digits, no network; "
        "mnist: 28x28 MNIST idx files from --mnist-dir; text: Python standard-library "
        "source, character by character, no network")
    add("--mnist-dir", default=os.path.join("data", "mnist"), metavar="DIR",
        help="directory with the MNIST .gz idx files, downloaded there if missing "
        "(default: %(default)s)")
    add("--logdir", default=os.path.join("runs", "demo"),
        help="TensorBoard log directory; the run is <logdir>/<data> (default: %(default)s)")
    add("--steps", type=_positive,
        help="training steps (default: digits 2000, mnist 3000, text 1500)")
    add("--batch-size", type=_positive,
        help="sequences per training step (default: 64, text 32)")
    add("--lr", type=float, help="Adam learning rate (default: 0.003, text 0.005)")
    add("--log-every", type=_positive, metavar="K",
        help="log the units every K steps, and at the first and last (default: digits 100, "
        "mnist 250, text 75)")
    add("--hidden", type=_positive,
        help="hidden units (default: 169, a 13x13 grid; text 128)")
    add("--num-layers", type=_positive, default=1, help="stacked RNN layers (default: 1)")
    add("--layer", type=int, default=-1,
        help="whose units are logged (default: -1, the top layer)")
    add("--window", type=_positive, metavar="L",
        help="rows (characters) per weighted-average window (default: digits 4, mnist 10, "
        "text 10)")
    add("--rollout", type=_non_negative, metavar="R",
        help="rows (characters) the model predicts after each window (default: digits 4, "
        "mnist 10, text 10)")
    add("--probe-size", type=_positive, metavar="N",
        help="images (text: sequences) in the probe the units are measured on (default: "
        "digits 600 of 1797, mnist 2000, text 300)")
    add("--weighting", nargs="+", choices=metadata.WEIGHTINGS, default=list(metadata.WEIGHTINGS),
        help="weightings to log, the first shown by default (default: "
        f"{' '.join(metadata.WEIGHTINGS)})")
    add("--seed", type=int, default=0,
        help="seed of the model and batches (default: %(default)s)")
    add("--probe-seed", type=int, default=0,
        help="seed of the probe sample; runs with the same one can be compared (default: %(default)s)")
    add("--run", help="run name under --logdir (default: the --data name)")
    add("--device", choices=("cpu", "cuda"),
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to train (default: cuda when available)")
    add("--threads", type=_positive, metavar="N",
        help="CPU threads of torch while training and logging (default: 1: these small models "
        "train about as fast on one thread as on two idle cores, many times faster when another "
        "process keeps a core busy, and the background logging gets a core of its own)")
    add("--background", action=argparse.BooleanOptionalAction, default=True,
        help="log the units in a background thread, on a copy of the model, while training goes "
        "on (default: on; --no-background logs in the training loop)")
    add("--serve", action="store_true", help="after training, serve TensorBoard on 127.0.0.1")
    add("--port", type=_positive, default=6006, help="port for --serve (default: %(default)s)")
    args = parser.parse_args(argv)
    for name, value in DATA_DEFAULTS[args.data].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _non_negative(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def load_data(args):
    """The ``demo.data.Dataset`` that ``--data`` names; exits with the
    loader's message when the MNIST files are missing or bad."""
    if args.data == "digits":
        return demo_data.load_digits_rows()
    if args.data == "text":
        return demo_text.load_stdlib_text()
    try:
        return demo_data.load_mnist(args.mnist_dir)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"python -m demo: {e}") from None


def make_model(dataset, args):
    """The model for ``dataset``: a ``CharPredictor`` for text, else a ``RowPredictor``."""
    if args.data == "text":
        return CharPredictor(len(dataset.vocab), args.hidden, args.num_layers)
    return RowPredictor(dataset.sequences.shape[2], args.hidden, args.num_layers)


def make_probe(dataset, args, model):
    """The fixed probe: ``--probe-size`` sequences drawn with ``--probe-seed`` (all by
    default). Text probes hold tokens, read through ``model.embed``, and annotations."""
    count = len(dataset.sequences)
    chosen = np.random.default_rng(args.probe_seed).permutation(count)[: args.probe_size or count]
    chosen.sort()
    if args.data == "text":
        return rnn_units.Probe(
            dataset.sequences[chosen], window=args.window, vocab=list(dataset.vocab),
            embed=model.embed, max_windows=TEXT_PROBE_WINDOWS, seed=args.probe_seed,
            annotations={name: values[chosen] for name, values in dataset.annotations.items()},
        )
    return rnn_units.Probe(
        dataset.sequences[chosen], window=args.window, labels=dataset.labels[chosen],
        class_names=list(dataset.class_names), display="image_rows",
    )


def fresh_run_dir(logdir, name):
    """``<logdir>/<name>``, emptied of the event and data files of an earlier demo run."""
    run_dir = os.path.join(logdir, name)
    old = glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))
    if old:
        print(f"Replacing the previous run in {run_dir}")
    for path in old:
        os.remove(path)
    shutil.rmtree(os.path.join(run_dir, "plugins"), ignore_errors=True)
    return run_dir


@contextlib.contextmanager
def torch_threads(count):
    """Runs the block with ``count`` CPU threads in torch (when given), restored after."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def logged_steps(args):
    """Steps at which the units are logged: 0, every ``--log-every``, the last."""
    return sorted(set(range(0, args.steps, args.log_every)) | {args.steps})


def train(model, dataset, probe, writer, args):
    """Trains with Adam on random batches, logging the units at
    ``logged_steps(args)``. Returns the last step's features."""
    sequences = torch.as_tensor(dataset.sequences, device=args.device)
    batches = torch.Generator(device=args.device).manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    log_at = set(logged_steps(args))
    features = log_units(writer, model, probe, args, step=0)
    progress = tqdm.trange(1, args.steps + 1, desc="training", unit="step")
    for step in progress:
        index = torch.randint(len(sequences), (args.batch_size,), device=args.device, generator=batches)
        loss = model.loss(sequences[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        writer.add_scalar("loss/train", loss.item(), step)
        if step in log_at:
            progress.set_postfix(loss=f"{loss.item():.4f}")
            features = log_units(writer, model, probe, args, step)
    return features.result() if args.background else features


def log_units(writer, model, probe, args, step):
    """Logs the units at ``step`` with the project's API; returns the features
    (with ``--background``, a ``Future`` of them)."""
    return rnn_units.add_rnn_units(
        writer, TAG, model.rnn, probe, readout=model.readout, rollout=args.rollout,
        weighting=tuple(args.weighting), layer=args.layer, global_step=step,
        background=args.background,
    )


def annotation_summary(features, count=3):
    """Text lines: per annotation, the ``count`` units whose signal correlates
    most with it (largest ``|r|``), with their correlation."""
    lines = ["Units most correlated with each annotation (Pearson r of a unit's signal "
             "after a character with the character's annotation):"]
    for name, correlation in features.annotation_correlation.items():
        best = correlation.abs().argsort(descending=True)[:count].tolist()
        units = ", ".join(f"unit {unit} (r = {correlation[unit]:+.2f})" for unit in best)
        lines.append(f"  {name}: {units}")
    return lines


def unit_summary(features):
    """Text lines: units per preferred class and dead units per weighting.

    A unit's preferred class is the one with the highest mean weight per
    window of that class (so class sizes do not matter), under ``top`` if
    logged, else the first weighting; dead units prefer nothing.
    """
    name = "top" if "top" in features.weighted else next(iter(features.weighted))
    weighted = features.weighted[name]
    preferred = weighted.class_weight[~weighted.dead].argmax(dim=1)
    counts = torch.bincount(preferred, minlength=len(features.class_names)).tolist()
    per_class = "  ".join(f"{c}: {n}" for c, n in zip(features.class_names, counts))
    dead = ", ".join(
        f"{int(w.dead.sum())} of {features.units} under {n}" for n, w in features.weighted.items()
    )
    return [
        f"Units preferring each class ({name} weighting): {per_class}",
        f"Dead units (weight zero on every probe window): {dead}",
    ]


def view_command(logdir):
    """The shell command that views ``logdir`` with this environment's TensorBoard."""
    # The venv's script when there is one: `make demo` does not activate the venv.
    script = shutil.which("tensorboard", path=os.path.dirname(sys.executable))
    script = min(os.path.relpath(script), script, key=len) if script else "tensorboard"
    return shlex.join([script, "--logdir", logdir])


def serve(logdir, port):
    """Serves TensorBoard on 127.0.0.1:``port`` until interrupted."""
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)])
    try:
        url = board.launch()
    except program.TensorBoardServerException as e:
        raise SystemExit(f"Cannot serve TensorBoard: {e.msg}") from None
    print(f"TensorBoard is serving the demo at {url}#{metadata.PLUGIN_NAME} (Ctrl+C stops it)",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("Stopped.")


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    dataset = load_data(args)
    print(f"Data: {dataset.source}.")
    if args.data == "text":
        print(f"Each sequence is {dataset.sequences.shape[1]} characters, "
              f"{len(dataset.vocab)} tokens in all; the units are shown with windows of "
              f"L={args.window} characters and rollouts of R={args.rollout} characters.")
    else:
        rows, width = dataset.sequences.shape[1:]
        print(f"Each image is a sequence of {rows} rows of {width} pixels; the units are "
              f"shown with windows of L={args.window} rows and rollouts of R={args.rollout} rows.")
    torch.manual_seed(args.seed)
    model = make_model(dataset, args).to(args.device)
    probe = make_probe(dataset, args, model)
    kind = "sequences" if args.data == "text" else "images"
    print(f"Probe: {probe.num_sequences} {kind}, {probe.num_windows} windows.")
    run = args.run or args.data
    run_dir = fresh_run_dir(args.logdir, run)
    with SummaryWriter(run_dir) as writer, torch_threads(args.threads):
        features = train(model, dataset, probe, writer, args)
    print(f"Trained {args.steps} steps and logged the units {len(logged_steps(args))} times "
          f"in {time.monotonic() - start:.1f} s.")
    summary = annotation_summary(features) if args.data == "text" else unit_summary(features)
    for line in summary:
        print(line)
    print(f"Logdir: {args.logdir} (run {run!r}, tag {TAG!r}). "
          f"View it with: {view_command(args.logdir)}")
    if args.serve:
        serve(args.logdir, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
