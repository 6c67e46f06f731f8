"""Event files shared by the backend tests, written once through the project's API."""

import json
import pathlib
import shutil
from typing import NamedTuple

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata

# More steps than either loader keeps of a third-party plugin by default.
MANY_STEPS = 520
FUTURE_TAG = "rnn/future"
INLINE_TAG = "rnn/inline"



# Modules whose every test runs a real TensorBoard or browser: `make test-fast` leaves them out.
SLOW_MODULES = ("test_browser", "test_browser_displays", "test_browser_scale", "test_tensorboard_process", "test_browser_text_demo")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def logdir(tmp_path_factory):
    """A logdir with three runs, returned as a ``Logdir``.

    - ``train``: ``MANY_STEPS`` steps of ``support.TAG``;
    - ``resized``: steps 0-2 of a 4-unit RNN, then 3-5 of a 5-unit one, one tag
      (each a writer of its own, as two processes would);
    - ``shrunk``: the same the other way round, 5 units then 4;
    - ``mixed``: one step of ``support.TAG``, one of ``INLINE_TAG`` written
      with ``rnn_units_pb`` (data inline in the event) and one of
      ``FUTURE_TAG``, whose format version is newer than this package's;
    - ``v1``: the format-v1 fixture run ``train`` (``tests/fixtures``).
    """
    path = tmp_path_factory.mktemp("logdir")
    train = support.write_run(path, "train", range(MANY_STEPS))
    resized = _write_resized(path / "resized", (4, 5))
    shrunk = _write_resized(path / "shrunk", (5, 4))
    _write_mixed(path / "mixed", train[0])
    shutil.copytree(support.V1_FIXTURE / "train", path / "v1")
    return Logdir(path, train, resized, shrunk)


class Logdir(NamedTuple):
    """What ``logdir`` wrote: ``{step: UnitFeatures}`` per run."""

    path: pathlib.Path
    train: dict
    resized: dict
    shrunk: dict
    future_tag: str = FUTURE_TAG
    inline_tag: str = INLINE_TAG


def _write_resized(run_dir, sizes):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        probe = rnn_units.Probe(torch.randn(3, 8, 2), window=3)
        first, then = (torch.nn.RNN(2, size, batch_first=True) for size in sizes)
    logged = {}
    for steps, rnn in ((range(3), first), (range(3, 6), then)):
        with support.summary_writer(run_dir) as writer:
            for step in steps:
                logged[step] = rnn_units.add_rnn_units(writer, support.TAG, rnn, probe, global_step=step)
    return logged


def _write_mixed(run_dir, features):
    future = rnn_units.rnn_units_pb(FUTURE_TAG, features)
    value = future.value[0]
    value.metadata.plugin_data.content = _newer(value.metadata.plugin_data.content)
    value.tensor.string_val[0] = _newer(value.tensor.string_val[0])
    with SummaryWriter(run_dir) as writer:
        rnn_units.add_unit_features(writer, support.TAG, features, global_step=0)
        writer._get_file_writer().add_summary(rnn_units.rnn_units_pb(INLINE_TAG, features), global_step=0)
        writer._get_file_writer().add_summary(future, global_step=0)


def _newer(blob):
    content = json.loads(blob)
    content["version"] = metadata.VERSION + 1
    return json.dumps(content).encode("utf-8")
