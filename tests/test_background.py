"""add_rnn_units(background=True): the model as it was at the call, written in
order through a real SummaryWriter, training's RNG untouched, errors never lost."""

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units

TAG = "rnn/units"


# (started, release) events: a Model's readout ("events") or a Failing readout ("fail"), and
# their copies', signal started and wait on release.
HOLD = {}


@pytest.fixture(autouse=True)
def _no_hold():
    yield
    HOLD.clear()


class Model(nn.Module):
    """A GRU and its head; ``readout`` can be held (``HOLD``) to order threads in a test."""

    def __init__(self, seed=0):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.rnn = nn.GRU(3, 8, batch_first=True)
            self.head = nn.Linear(8, 3)

    def readout(self, hidden):
        if "events" in HOLD:
            started, release = HOLD["events"]
            started.set()
            assert release.wait(30), "the test never released the readout"
        return self.head(hidden)


class Failing(nn.Module):
    """A readout that fails, once ``HOLD["fail"]`` (started, release) lets it."""

    def forward(self, hidden):
        started, release = HOLD["fail"]
        started.set()
        assert release.wait(30), "the test never released the readout"
        raise ValueError("the readout failed on purpose")


def _probe():
    x = torch.rand(6, 7, 3, generator=torch.Generator().manual_seed(1))
    return rnn_units.Probe(x, 3, labels=[0, 1, 0, 1, 0, 1])


def _log(writer, model, probe, step, **kwargs):
    return rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=model.readout, rollout=2,
                                   global_step=step, **kwargs)


def _held():
    HOLD["events"] = started, release = threading.Event(), threading.Event()
    return started, release


def test_measures_the_model_as_it_was_at_the_call_and_writes_steps_in_order(tmp_path):
    model, probe = Model(), _probe()
    expected = {}
    with SummaryWriter(tmp_path / "run") as writer:
        for step in range(3):
            expected[step] = rnn_units.compute_unit_features(model.rnn, probe, readout=model.readout, rollout=2)
            future = _log(writer, model, probe, step, background=True)
            with torch.no_grad():  # training goes on: the live model changes at once
                for p in model.parameters():
                    p.add_(torch.randn_like(p))
        assert future.result().units == 8
        # the writer's close (leaving the with) waits for every pending step
    logged = support.read_logged_steps(tmp_path / "run", TAG)
    assert sorted(logged) == [0, 1, 2]
    for step, (header, arrays) in logged.items():
        for name in ("top", "relu"):
            np.testing.assert_allclose(arrays[f"{name}/average"], expected[step][name].average.numpy(), rtol=2e-3, atol=1e-3)
            np.testing.assert_allclose(arrays[f"{name}/rollout"], expected[step][name].rollout.numpy(), rtol=2e-3, atol=1e-3)
        assert header.get("previous_step") == (step - 1 if step else None)  # each step after the one before
    assert model.training  # the copy was put in eval mode, not the model


def test_returns_before_measuring_and_a_third_pending_step_waits(tmp_path):
    model, probe = Model(), _probe()
    started, release = _held()
    with SummaryWriter(tmp_path / "run") as writer:
        first = _log(writer, model, probe, 0, background=True)
        assert started.wait(30) and not first.done()  # the call returned while its step runs
        second = _log(writer, model, probe, 1, background=True)  # pending: two may be
        third = []
        caller = threading.Thread(target=lambda: third.append(_log(writer, model, probe, 2, background=True)))
        caller.start()
        caller.join(0.5)
        assert caller.is_alive() and not third  # a third waits for the oldest
        release.set()
        caller.join(30)
        assert [f.result().units for f in (first, second, third[0])] == [8, 8, 8]
    assert sorted(support.read_logged_steps(tmp_path / "run", TAG)) == [0, 1, 2]


def test_leaves_the_training_threads_random_numbers_alone(tmp_path):
    """Forking the RNG in the worker would restore its state when the step ends,
    rewinding what the training thread drew meanwhile."""
    model, probe = Model(), _probe()
    torch.manual_seed(123)
    expected = torch.rand(8)
    started, release = _held()
    with SummaryWriter(tmp_path / "run") as writer:
        torch.manual_seed(123)
        future = _log(writer, model, probe, 0, background=True)
        assert started.wait(30)
        drawn = [torch.rand(4)]  # while the step runs
        release.set()
        future.result()
        drawn.append(torch.rand(4))  # after it ended
    torch.testing.assert_close(torch.cat(drawn), expected)


def test_a_failed_step_is_raised_by_its_future_then_by_the_next_call(tmp_path):
    model, probe = Model(), _probe()
    with SummaryWriter(tmp_path / "run") as writer:
        future = rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=nn.Linear(8, 5), rollout=2,
                                         global_step=3, background=True)
        with pytest.raises(ValueError, match=r"readout: expected a floating tensor of shape \(B, D\)"):
            future.result()
        with pytest.raises(RuntimeError, match=r"background=True\) of tag 'rnn/units' at global_step 3 failed: "
                                               r"ValueError: readout"):
            _log(writer, model, probe, 4)
        _log(writer, model, probe, 5, background=True)  # reported once: logging goes on
    assert sorted(support.read_logged_steps(tmp_path / "run", TAG)) == [5]


def test_close_raises_a_failure_nobody_collected_and_still_closes(tmp_path):
    model, probe = Model(), _probe()
    writer = SummaryWriter(tmp_path / "run")
    rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=nn.Linear(8, 5), rollout=2,
                            global_step=0, background=True)
    with pytest.raises(RuntimeError, match="at global_step 0 failed"):
        writer.close()
    assert writer.file_writer is None  # closed all the same
    writer.close()  # and the failure was reported once


def test_refuses_what_it_cannot_copy_with_the_model(tmp_path):
    model, probe = Model(), _probe()
    with SummaryWriter(tmp_path / "run") as writer:
        with pytest.raises(ValueError, match="background: the readout is a function, which would read the live model"):
            rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=lambda h: model.head(h), rollout=2,
                                    model=model, global_step=0, background=True)
        with pytest.raises(ValueError, match=r"global_step: expected an integer in 0\.\..*, got -1"):
            _log(writer, model, probe, -1, background=True)
        with pytest.raises(ValueError, match="tag: expected a non-empty string"):
            rnn_units.add_rnn_units(writer, "", model.rnn, probe, global_step=0, background=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the old hook-based weight_norm: weight is computed
            weight_normed = nn.utils.weight_norm(nn.Linear(8, 3))
        with pytest.raises(ValueError, match="background: cannot copy the model"):
            rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=weight_normed, rollout=2,
                                    global_step=0, background=True)


def test_close_waits_for_the_steps_after_a_failed_one_before_raising(tmp_path):
    model, probe = Model(), _probe()
    HOLD["fail"] = started, release = threading.Event(), threading.Event()
    writer = SummaryWriter(tmp_path / "run")
    first = rnn_units.add_rnn_units(writer, TAG, model.rnn, probe, readout=Failing(), rollout=2, global_step=1,
                                    background=True)
    second = _log(writer, model, probe, 2, background=True)  # pending behind the first
    assert started.wait(30)
    release.set()
    with pytest.raises(RuntimeError, match="at global_step 1 failed: ValueError: the readout failed on purpose"):
        writer.close()
    assert first.exception() is not None and second.result().units == 8
    assert sorted(support.read_logged_steps(tmp_path / "run", TAG)) == [2]  # written before the writer closed


def test_a_failure_nobody_collected_is_printed_at_exit(tmp_path):
    script = f"""
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
import tensorboard_rnn_units as rnn_units
writer = SummaryWriter({str(tmp_path / "run")!r})
probe = rnn_units.Probe(torch.rand(4, 6, 3), 3)
rnn_units.add_rnn_units(writer, "u", nn.GRU(3, 8, batch_first=True), probe, readout=nn.Linear(8, 5), rollout=2,
                        global_step=7, background=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert "tensorboard_rnn_units: add_rnn_units(background=True) of tag 'u' at global_step 7 failed: ValueError: " \
        "readout: expected a floating tensor" in done.stderr


def test_no_exemplars(tmp_path):
    features = rnn_units.compute_unit_features(Model().rnn, _probe(), exemplars=0, weighting=("top", "relu", "bottom"))
    assert features["top"].exemplar_sequence.shape == (8, 0) and features["bottom"].exemplar_signal.shape == (8, 0)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core every thread's OpenMP team has one thread anyway")
def test_the_worker_follows_torch_set_num_threads_changed_after_it_started(tmp_path):
    """torch applies the thread count to a thread once, at its first parallel kernel: a worker
    started with two threads would keep them after the training thread asked for one."""
    import threadpoolctl

    torch_lib = os.path.dirname(torch.__file__)
    seen = []

    class Recording(Model):
        def readout(self, hidden):
            seen.extend(pool["num_threads"] for pool in threadpoolctl.threadpool_info()
                        if pool["user_api"] == "openmp" and pool["filepath"].startswith(torch_lib))
            return super().readout(hidden)

    previous = torch.get_num_threads()
    try:
        with SummaryWriter(str(tmp_path)) as writer:
            torch.set_num_threads(2)
            _log(writer, Recording(), _probe(), 0, background=True).result()
            assert set(seen) == {2}, seen
            seen.clear()
            torch.set_num_threads(1)
            _log(writer, Recording(), _probe(), 1, background=True).result()
            assert set(seen) == {1}, seen
    finally:
        torch.set_num_threads(previous)


def test_a_running_step_shortens_pythons_switch_interval_and_restores_it(tmp_path):
    """The worker's pure-Python stretches would stall the training loop for up to the switch
    interval (5 ms by default) each time it wants the GIL; while a step runs it is at most 0.5 ms."""
    from tensorboard_rnn_units import worker

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.01)
    try:
        with SummaryWriter(str(tmp_path)) as writer:
            started, release = _held()
            future = _log(writer, Model(), _probe(), 0, background=True)
            assert started.wait(30)
            during = sys.getswitchinterval()
            release.set()
            future.result()
        assert during == pytest.approx(worker.SWITCH_INTERVAL)
        assert sys.getswitchinterval() == pytest.approx(0.01)
    finally:
        sys.setswitchinterval(previous)
