"""Backfill: saved checkpoints (real torch.save files) -> logged steps, by function and command."""

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units.backfill import BackfillReport, backfill, find_rnn, load_checkpoint, step_in_name

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "rnn/units"
STEPS = (100, 200, 300)

# The model module users would have: imported by the tests and, as MODULE:FACTORY, by the command.
MODELS_PY = '''
import torch
from torch import nn


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5, batch_first=True)
        self.head = nn.Linear(5, 3)

    def readout(self, hidden):
        return torch.sigmoid(self.head(hidden))


def make_model():
    return TinyModel()


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(3, 4)
        self.decoder = nn.RNN(4, 5)
'''


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A directory with ``backfill_models.py``, ``probe.pt``, three checkpoints of
    differently seeded models (``ckpt-100.pt``, ``ckpt-200.pt``: bare state
    dicts; ``latest.pt``: ``{"state_dict", "step": 300}``) and bad ones:
    ``corrupt-150.pt`` (garbage bytes), ``other-250.pt`` (another model's keys)."""
    folder = tmp_path_factory.mktemp("saved")
    (folder / "backfill_models.py").write_text(textwrap.dedent(MODELS_PY))
    sys.path.insert(0, str(folder))
    try:
        models = importlib.import_module("backfill_models")
    finally:
        sys.path.remove(str(folder))
    states = {}
    with torch.random.fork_rng():  # seeded models; the tests' RNG untouched
        for step in STEPS:
            torch.manual_seed(step)
            states[step] = models.make_model().state_dict()
    torch.save(states[100], folder / "ckpt-100.pt")
    torch.save(states[200], folder / "ckpt-200.pt")
    torch.save({"state_dict": states[300], "optimizer": {"lr": 0.1}, "step": 300}, folder / "latest.pt")
    (folder / "corrupt-150.pt").write_bytes(b"\x80\x02 this is not a checkpoint" * 4)
    torch.save(torch.nn.GRU(3, 5).state_dict(), folder / "other-250.pt")
    generator = torch.Generator().manual_seed(0)
    sequences = torch.rand(6, 8, 3, generator=generator)
    probe_args = {"sequences": sequences, "window": 3, "labels": torch.tensor([0, 1, 0, 1, 1, 0]),
                  "class_names": ["even", "odd"]}
    torch.save(probe_args, folder / "probe.pt")
    return folder, models, states, rnn_units.Probe(**probe_args)


def _expected(models, state, probe):
    model = models.make_model()
    model.load_state_dict(state)
    return rnn_units.compute_unit_features(model.rnn, probe, readout=model.readout, rollout=2)


def _assert_logged(run_dir, models, states, probe, steps):
    logged = support.read_logged_steps(run_dir, TAG)
    assert sorted(logged) == list(steps)
    for step in steps:
        header, arrays = logged[step]
        features = _expected(models, states[step], probe)
        assert header["probe_fingerprint"] == probe.fingerprint and header["rollout"] == 2
        for weighting in ("top", "relu"):
            for part in ("average", "rollout"):
                expected = getattr(features[weighting], part).numpy().astype(np.float16)
                np.testing.assert_allclose(arrays[f"{weighting}/{part}"], expected, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(arrays["signal_mean"], features.signal_mean.numpy(), rtol=1e-5)
    # Different seeds, different units: the comparison above tells steps apart.
    assert not np.allclose(logged[steps[0]][1]["top/average"], logged[steps[-1]][1]["top/average"])


def test_logs_every_checkpoint_at_its_step(saved, tmp_path, capsys):
    folder, models, states, probe = saved
    checkpoints = [  # out of order, one of each kind of source
        (300, folder / "latest.pt"),
        (100, str(folder / "ckpt-100.pt")),
        (200, {"model": states[200], "epoch": 2}),
    ]
    report = backfill(tmp_path / "run", TAG, models.make_model, checkpoints, probe, readout="readout", rollout=2)
    assert report == BackfillReport(logged=STEPS, skipped=())
    _assert_logged(tmp_path / "run", models, states, probe, STEPS)
    err = capsys.readouterr().err
    assert "3/3" in err and "skipped" not in err  # the progress bar, and nothing skipped


def test_bad_checkpoints_are_named_and_skipped(saved, tmp_path, capsys):
    folder, models, states, probe = saved
    checkpoints = [(step, folder / name) for step, name in
                   [(100, "ckpt-100.pt"), (150, "corrupt-150.pt"), (200, "ckpt-200.pt"), (250, "other-250.pt")]]
    report = backfill(tmp_path / "run", TAG, models.make_model, checkpoints, probe,
                      rnn=lambda m: m.rnn, readout=lambda m: m.readout, rollout=2, progress=False)
    assert report.logged == (100, 200)
    assert [(s.step, s.checkpoint) for s in report.skipped] == [
        (150, str(folder / "corrupt-150.pt")), (250, str(folder / "other-250.pt"))]
    assert report.skipped[0].reason.startswith("cannot be loaded: UnpicklingError")
    assert "does not fit the model" in report.skipped[1].reason
    assert 'Missing key(s) in state_dict: "rnn.weight_ih_l0"' in report.skipped[1].reason
    assert 'Unexpected key(s) in state_dict: "weight_ih_l0"' in report.skipped[1].reason
    err = capsys.readouterr().err
    assert err.splitlines() == [str(s) for s in report.skipped]  # no progress bar, one line per skip
    assert f"skipped checkpoint {folder / 'corrupt-150.pt'} (step 150): cannot be loaded" in err
    _assert_logged(tmp_path / "run", models, states, probe, (100, 200))


def test_diverged_checkpoint_is_skipped(saved, tmp_path):
    folder, models, states, probe = saved
    diverged = {**states[200], "rnn.weight_hh_l0": torch.full_like(states[200]["rnn.weight_hh_l0"], float("nan"))}
    report = backfill(tmp_path / "run", TAG, models.make_model, [(1, states[100]), (2, diverged)], probe,
                      progress=False)
    assert report.logged == (1,)
    assert report.skipped[0][:2] == (2, "<state dict at step 2>")
    assert report.skipped[0].reason == "NaN or Inf in the recurrent layer's parameter 'weight_hh_l0'"


def test_step_rule_and_accepted_files(saved):
    folder, _, states, _ = saved
    assert [step_in_name(n) for n in ("ckpt-1200.pt", "epoch3_step500.pth", "run2/model.pt", "ckpt.700",
                                      "model_9.pth.tar")] == [1200, 500, None, 700, 9]
    state, step = load_checkpoint(folder / "latest.pt")
    assert step == 300 and state.keys() == states[300].keys()
    assert load_checkpoint(folder / "ckpt-100.pt")[1] is None
    assert load_checkpoint({"model_state_dict": states[100], "global_step": np.int64(7)})[1] == 7


def test_rnn_default_and_bad_arguments(saved, tmp_path):
    folder, models, states, probe = saved
    run = tmp_path / "run"
    ok = [(1, folder / "ckpt-100.pt")]
    assert find_rnn(models.make_model()).__class__ is torch.nn.GRU
    assert isinstance(find_rnn(torch.nn.LSTM(3, 4)), torch.nn.LSTM)
    cases = [
        (dict(checkpoints=[]), ValueError, "checkpoints: expected at least one"),
        (dict(checkpoints=str(folder / "ckpt-100.pt")), ValueError, "checkpoints: expected an iterable of"),
        (dict(checkpoints=[(1, folder / "ckpt-100.pt"), (2, "b.pt"), (1, "a.pt")]), ValueError,
         r"checkpoints: step 1 is given twice \(.*ckpt-100.pt and a.pt\)"),
        (dict(checkpoints=[(-1, "a.pt")]), ValueError, r"checkpoints\[0\] step: expected an integer >= 0"),
        (dict(checkpoints=["a.pt"]), ValueError, r"checkpoints\[0\]: expected a \(step, source\) pair"),
        (dict(model_factory=models.TwoLayers), ValueError, r"rnn: cannot tell .* 2: 'encoder', 'decoder'"),
        (dict(model_factory=models.TwoLayers, rnn="encoder.gru"), ValueError, "rnn: TwoLayers has no 'encoder.gru'"),
        (dict(rnn=torch.nn.GRU(3, 5)), TypeError, "rnn: got an nn.Module"),
        (dict(rollout=2), ValueError, "readout: required when rollout > 0"),
        (dict(model_factory=lambda: "model"), TypeError, "model_factory: expected it to return an nn.Module"),
        (dict(probe=probe.sequences), TypeError, "probe: expected a tensorboard_rnn_units.Probe"),
        (dict(tag=""), ValueError, "tag: expected a non-empty string"),
    ]
    for change, error, message in cases:
        arguments = dict(logdir=run, tag=TAG, model_factory=models.make_model, checkpoints=ok, probe=probe,
                         progress=False)
        arguments.update(change)
        with pytest.raises(error, match=message):
            backfill(**arguments)
    assert not run.exists()  # every argument is checked before anything is written
    # An error while measuring stops the backfill and names the checkpoint.
    with pytest.raises(ValueError, match="signal: GRU offers") as raised:
        backfill(run, TAG, models.make_model, ok, probe, signal="cell", progress=False)
    assert raised.value.__notes__ == [f"(while logging checkpoint {folder / 'ckpt-100.pt'}, step 1)"]


def _command(cwd, *args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "tensorboard_rnn_units", "backfill", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_command_end_to_end(saved, tmp_path):
    folder, models, states, probe = saved
    common = ("--tag", TAG, "--model", "backfill_models:make_model", "--probe", "probe.pt",
              "--readout", "readout", "--rollout", "2")
    # Steps from the names (ckpt-100.pt, ckpt-200.pt) and from the file's "step" entry (latest.pt).
    done = _command(folder, "--logdir", tmp_path / "good", *common, "latest.pt", "ckpt-200.pt", "ckpt-100.pt")
    assert done.returncode == 0, done.stderr
    assert f"logged 3 of 3 checkpoints under '{TAG}' in {tmp_path / 'good'} (steps 100 to 300)" in done.stdout
    assert "3/3" in done.stderr and "skipped" not in done.stderr
    _assert_logged(tmp_path / "good", models, states, probe, STEPS)

    (tmp_path / "nostep.pt").write_bytes((folder / "ckpt-100.pt").read_bytes())
    done = _command(folder, "--logdir", tmp_path / "some", *common, "--no-progress", "ckpt-100.pt",
                    "corrupt-150.pt", "other-250.pt", tmp_path / "nostep.pt", "missing-9.pt", "ckpt-200.pt")
    assert done.returncode == 1, done.stderr
    assert "logged 2 of 6 checkpoints" in done.stdout and "(steps 100 to 200)" in done.stdout
    err = done.stderr
    assert "skipped checkpoint corrupt-150.pt: cannot be loaded: UnpicklingError" in err
    assert "skipped checkpoint other-250.pt (step 250): does not fit the model" in err
    assert f"skipped checkpoint {tmp_path / 'nostep.pt'}: no step: no 'step' entry" in err
    assert "skipped checkpoint missing-9.pt: cannot be loaded: FileNotFoundError" in err
    assert f"skipped 4 of 6 checkpoints (reasons above): corrupt-150.pt, {tmp_path / 'nostep.pt'}, missing-9.pt, " \
        "other-250.pt" in err
    _assert_logged(tmp_path / "some", models, states, probe, (100, 200))


@pytest.mark.slow
def test_command_usage_errors(saved, tmp_path):
    folder = saved[0]
    base = ("--logdir", tmp_path / "run", "--tag", TAG, "--probe", "probe.pt")
    cases = [
        ((*base, "--model", "backfill_models:make_model"), "the following arguments are required: CHECKPOINT"),
        ((*base, "--model", "backfill_models.make_model", "ckpt-100.pt"),
         "--model: expected MODULE:FACTORY, e.g. models:make_model, got 'backfill_models.make_model'"),
        ((*base, "--model", "no_such_module:make", "ckpt-100.pt"),
         "--model: cannot import 'no_such_module': ModuleNotFoundError"),
        ((*base, "--model", "backfill_models:make", "ckpt-100.pt"),
         "--model: backfill_models:make: module 'backfill_models' has no attribute 'make'"),
        ((*base, "--model", "backfill_models:make_model", "--probe", "ckpt-100.pt", "ckpt-100.pt"),
         "--probe ckpt-100.pt: no 'sequences'; expected the keys 'sequences', 'window' and optionally"),
        ((*base, "--model", "backfill_models:make_model", "ckpt-100.pt", tmp_path / "step-100.pt"),
         f"checkpoints: step 100 is given twice (ckpt-100.pt and {tmp_path / 'step-100.pt'})"),
        ((*base, "--model", "backfill_models:make_model", "--rollout", "2", "ckpt-100.pt"),
         "readout: required when rollout > 0"),
    ]
    (tmp_path / "step-100.pt").write_bytes((folder / "ckpt-200.pt").read_bytes())
    for args, message in cases:
        done = _command(folder, *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert "usage: python -m tensorboard_rnn_units backfill" in done.stderr
    assert not (tmp_path / "run").exists()
