"""``python -m tensorboard_rnn_units``: command-line tools.

``backfill`` logs saved checkpoints after the fact (``backfill.py``)::

    python -m tensorboard_rnn_units backfill --logdir runs/exp1 --tag rnn/units \\
        --model models:make_model --probe probe.pt --rollout 10 --readout readout \\
        checkpoints/*.pt

Exit status: 0 when every checkpoint was logged, 1 when some were skipped
(each is named on stderr with the reason), 2 for a usage error.

torch is imported only when a command runs, so ``--help`` is quick (and the
package itself must import without torch: TensorBoard loads the plugin from it).
"""

import argparse
import importlib
import os
import sys

from tensorboard_rnn_units import metadata

PROBE_KEYS = ("sequences", "window", "labels", "class_names", "max_windows", "seed", "display")

BACKFILL_HELP = """\
Log the hidden units of saved checkpoints into a TensorBoard run, each at its
training step, as if add_rnn_units had run while training.

Each CHECKPOINT is a torch.save'd state dict, or a dict holding it under
"state_dict", "model_state_dict" or "model" (read with weights_only=True). Its
step is the file's "step" (or "global_step") entry if it has one, else the last
integer in its file name, extension aside (ckpt-1200.pt -> 1200). A checkpoint
that cannot be loaded into the model, or has no step, is named on stderr with
the reason and skipped; the others are logged in step order.

--probe is a torch.save'd dict: {"sequences": (N, T, D) tensor, "window": L}
and optionally "labels", "class_names", "max_windows", "seed", "display", the
arguments of tensorboard_rnn_units.Probe. Save the one training logs with, so
the steps are comparable.

Exit status: 0 every checkpoint logged, 1 some skipped, 2 usage error."""


def main(argv=None):
    """Runs the command line ``argv`` (``sys.argv[1:]`` by default); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tensorboard_rnn_units",
        description="Tools of tensorboard-rnn-units: see what each hidden unit of an RNN has learned.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    backfill = commands.add_parser(
        "backfill",
        help="log saved checkpoints into a TensorBoard run, each at its step",
        description=BACKFILL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = backfill.add_argument
    add("--logdir", required=True, metavar="DIR", help="the run directory to write (as SummaryWriter(DIR))")
    add("--tag", required=True, help="summary tag, e.g. rnn/units (the one training logs with, if any)")
    add("--model", required=True, metavar="MODULE:FACTORY",
        help="a function or class that builds the model with no arguments, e.g. models:make_model "
        "for make_model in ./models.py (the current directory is on the import path)")
    add("--probe", required=True, metavar="PROBE.pt", help="torch.save'd Probe arguments (see above)")
    add("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint files (torch.save'd state dicts)")
    add("--rnn", metavar="ATTR",
        help="attribute path of the recurrent layer in the model, e.g. rnn or encoder.lstm "
        "(default: the model itself, or its only nn.RNN/GRU/LSTM)")
    add("--readout", metavar="ATTR",
        help="attribute path of the module or method mapping the top layer's (B, H) state to a "
        "(B, D) prediction, e.g. head or readout; needed with --rollout")
    add("--rollout", type=int, default=0, metavar="R", help="predictions fed back after each window (default: 0)")
    add("--layer", type=int, default=-1, help="whose units are logged (default: -1, the top layer)")
    add("--signal", help="preactivation, hidden or cell (default: preactivation for RNN, hidden for GRU/LSTM)")
    add("--context", default="prefix", help="prefix (run from the sequence start, default) or window")
    add("--weighting", nargs="+", choices=metadata.WEIGHTINGS, default=list(metadata.WEIGHTINGS),
        help="weightings to log, the first shown by default (default: top relu)")
    add("--no-progress", action="store_true", help="no progress bar")
    backfill.set_defaults(run=_backfill, parser=backfill)
    args = parser.parse_args(argv)
    return args.run(args)


def _backfill(args):
    error = args.parser.error  # prints the usage and the message, exits with 2
    module_name, colon, factory_path = args.model.partition(":")
    if not (colon and module_name and factory_path and ":" not in factory_path):
        error(f"--model: expected MODULE:FACTORY, e.g. models:make_model, got {args.model!r}")

    import torch

    from tensorboard_rnn_units import backfill as backfill_module
    from tensorboard_rnn_units.probe import Probe

    factory = _import_factory(module_name, factory_path, error)
    probe = _load_probe(args.probe, torch, Probe, error)

    skipped, checkpoints = [], []
    for path in args.checkpoints:
        try:
            step = backfill_module.load_checkpoint(path)[1]
        except backfill_module.CheckpointError as e:
            skipped.append(backfill_module.Skipped(None, path, str(e)))
            print(skipped[-1], file=sys.stderr)
            continue
        step = backfill_module.step_in_name(path) if step is None else step
        if step is None:
            skipped.append(backfill_module.Skipped(
                None, path, "no step: no 'step' entry in the file and no integer in its name"))
            print(skipped[-1], file=sys.stderr)
            continue
        checkpoints.append((step, path))

    logged = ()
    if checkpoints:
        options = dict(layer=args.layer, signal=args.signal, context=args.context, weighting=tuple(args.weighting))
        try:
            report = backfill_module.backfill(
                args.logdir, args.tag, factory, checkpoints, probe, rnn=args.rnn, readout=args.readout,
                rollout=args.rollout, progress=not args.no_progress, **options,
            )
        except (ValueError, TypeError) as e:  # the arguments do not fit each other, or the model
            error(" ".join([str(e), *getattr(e, "__notes__", ())]))
        logged, skipped = report.logged, skipped + list(report.skipped)
    total = len(args.checkpoints)
    steps = f" (steps {logged[0]} to {logged[-1]})" if len(logged) > 1 else f" (step {logged[0]})" if logged else ""
    print(f"logged {len(logged)} of {total} checkpoints under {args.tag!r} in {args.logdir}{steps}")
    if skipped:
        names = ", ".join(s.checkpoint for s in skipped)
        print(f"skipped {len(skipped)} of {total} checkpoints (reasons above): {names}", file=sys.stderr)
        return 1
    return 0


def _import_factory(module_name, factory_path, error):
    """The callable ``MODULE:FACTORY`` names; the current directory is importable."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or anything the module's own code raises
        error(f"--model: cannot import {module_name!r}: {type(e).__name__}: {e}")
    for name in factory_path.split("."):
        if not hasattr(factory, name):
            what = f"{type(factory).__name__} {getattr(factory, '__name__', '')!r}"
            error(f"--model: {module_name}:{factory_path}: {what} has no attribute {name!r}")
        factory = getattr(factory, name)
    if not callable(factory):
        error(f"--model: {module_name}:{factory_path} is a {type(factory).__name__}, not a function or class")
    return factory


def _load_probe(path, torch, Probe, error):
    """The ``Probe`` of a torch.save'd dict of its arguments."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        error(f"--probe {path}: cannot be loaded: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    if not isinstance(saved, dict):
        error(f"--probe {path}: expected a dict of Probe arguments {PROBE_KEYS}, got {type(saved).__name__}")
    expected = f"expected the keys 'sequences', 'window' and optionally {', '.join(map(repr, PROBE_KEYS[2:]))}"
    missing = [key for key in PROBE_KEYS[:2] if key not in saved]
    unknown = [key for key in saved if key not in PROBE_KEYS]
    if missing or unknown:
        what = f"no {missing[0]!r}" if missing else f"unknown key {unknown[0]!r}"
        error(f"--probe {path}: {what}; {expected}")
    try:
        return Probe(**saved)
    except ValueError as e:
        error(f"--probe {path}: {e}")


if __name__ == "__main__":
    sys.exit(main())
