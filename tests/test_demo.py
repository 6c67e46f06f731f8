"""The demo end to end on tiny settings: training, events, text output, serving.

``write_demo_logdir`` and the ``demo_logdir`` fixture make a small real demo
logdir (run ``digits``, tag ``rnn/units``) for other tests to reuse.
"""

import contextlib
import io
import json
import os
import re
import subprocess
import sys

import pytest

from demo import __main__ as demo_main
from demo import data as demo_data

import support

REPO = os.path.join(os.path.dirname(__file__), "..")
SHARED_MNIST = support.SHARED_MNIST

# A few seconds in all: 4 logged steps (0, 2, 4, 6) of 12 units.
TINY_DIGITS_ARGS = (
    "--steps", "6", "--log-every", "2", "--batch-size", "16",
    "--probe-size", "60", "--hidden", "12", "--device", "cpu",
)


def write_demo_logdir(logdir, *extra_args):
    """Runs ``python -m demo`` in-process on tiny digits settings into ``logdir``.

    ``extra_args`` override ``TINY_DIGITS_ARGS`` (argparse keeps the last
    value). Returns what the demo printed.
    """
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        demo_main.main(["--logdir", str(logdir), *TINY_DIGITS_ARGS, *extra_args])
    return output.getvalue()


@pytest.fixture(scope="module")
def demo_logdir(tmp_path_factory):
    """A tiny digits demo logdir: ``(logdir, printed output)``."""
    logdir = tmp_path_factory.mktemp("demo")
    return logdir, write_demo_logdir(logdir)


def read_steps(run_dir, tag=demo_main.TAG):
    """``{step: (header, arrays)}`` of ``tag`` in ``run_dir``, via TensorBoard's loader."""
    return support.read_logged_steps(run_dir, tag)


def test_digits_demo_logs_several_steps_of_every_unit(demo_logdir):
    logdir, _ = demo_logdir
    steps = read_steps(logdir / "digits")
    assert sorted(steps) == [0, 2, 4, 6]
    header, arrays = steps[6]
    assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (12, 4, 4, 8)
    assert header["class_names"] == list("0123456789")
    assert header["weightings"] == ["top", "relu"]
    assert arrays["top/average"].shape == (12, 4, 8)
    assert arrays["top/rollout"].shape == (12, 4, 8)
    assert arrays["top/class_weight"].shape == (12, 10)


def test_digits_demo_prints_data_summary_and_how_to_view(demo_logdir):
    logdir, output = demo_logdir
    assert "scikit-learn digits: 1797 images of 8x8 pixels" in output
    assert "windows of L=4 rows and rollouts of R=4 rows" in output
    assert "Units preferring each class (top weighting): 0: " in output
    assert "Dead units (weight zero on every probe window): " in output
    assert f"Logdir: {logdir} (run 'digits', tag 'rnn/units')" in output
    assert f"tensorboard --logdir {logdir}" in output


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """Two short digits demo runs on one probe with different seeds."""
    logdir = tmp_path_factory.mktemp("two_seeds")
    write_demo_logdir(logdir, "--steps", "60", "--log-every", "30")
    write_demo_logdir(logdir, "--steps", "60", "--log-every", "30", "--seed", "1", "--run", "digits-seed1")
    return logdir


@pytest.mark.slow
@pytest.mark.parametrize("load_fast", [True, False], ids=["rustboard", "python"])
def test_two_seeds_on_one_probe_are_matched_non_trivially(two_seeds, load_fast):
    """Issue 8's "done when": two demo runs with different seeds give a real, imperfect
    match, and the other comparisons serve the demo's logs, in the real TensorBoard."""
    with support.tensorboard(two_seeds, load_fast) as base_url:
        route = f"{base_url}/data/plugin/rnn_units"
        query = f"tag={demo_main.TAG}"

        def served():
            status, body = support.get(f"{route}/steps?run=digits-seed1&{query}")
            return status == 200 and json.loads(body)[-1]["step"] == 60

        support.wait_for(served, 60, what="the second demo run")
        status, body = support.get(f"{route}/match?run=digits&{query}&step=60&other_run=digits-seed1&other_step=60")
        assert status == 200, body
        result = json.loads(body)
        assert sorted(result["assignment"]) == list(range(12))
        similarity = sorted(result["similarity"])
        assert 0.1 < similarity[len(similarity) // 2] < 0.999 and 0 < result["cka"] < 0.999
        for path in ("drift", "similarity", "coverage"):
            status, body = support.get(f"{route}/{path}?run=digits&{query}")
            assert status == 200, (path, body[:300])
        assert support.unpack_wire(body)[0]["steps"] == [0, 30, 60]


def test_rerun_replaces_the_previous_run(tmp_path):
    write_demo_logdir(tmp_path)
    output = write_demo_logdir(tmp_path, "--steps", "3")
    assert "Replacing the previous run" in output
    assert sorted(os.listdir(tmp_path / "digits"))[1:] == ["plugins"]  # one event file, then plugins/
    assert len(os.listdir(tmp_path / "digits" / "plugins" / "rnn_units")) == 3  # this run's steps
    assert sorted(read_steps(tmp_path / "digits")) == [0, 2, 3]


@support.needs_shared_mnist
def test_mnist_demo_logs_169_units_of_28_pixel_rows(tmp_path):
    output = write_demo_logdir(
        tmp_path, "--data", "mnist", "--mnist-dir", SHARED_MNIST, "--hidden", "169",
        "--steps", "2", "--log-every", "1", "--probe-size", "20", "--batch-size", "8",
    )
    assert "MNIST test split" in output
    assert "windows of L=10 rows and rollouts of R=10 rows" in output
    steps = read_steps(tmp_path / "mnist")
    assert sorted(steps) == [0, 1, 2]
    header, arrays = steps[2]
    assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (169, 10, 10, 28)
    assert arrays["top/average"].shape == (169, 10, 28)


def test_mnist_offline_exits_at_once_naming_the_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_data, "MIRROR", f"http://127.0.0.1:{support.free_port()}/")
    expected = rf"No MNIST data in {re.escape(str(tmp_path))}.*train-images-idx3-ubyte\.gz"
    with pytest.raises(SystemExit, match=expected):
        write_demo_logdir(tmp_path, "--data", "mnist", "--mnist-dir", str(tmp_path))


def test_per_data_set_defaults():
    digits = demo_main.parse_args([])
    mnist = demo_main.parse_args(["--data", "mnist", "--window", "5"])
    assert (digits.window, digits.rollout, digits.hidden) == (4, 4, 169)
    assert (mnist.window, mnist.rollout) == (5, 10)
    assert demo_main.logged_steps(digits) == list(range(0, 2001, 100))


@pytest.mark.slow
def test_serve_runs_tensorboard_with_the_plugin(tmp_path):
    """``python -m demo --serve`` (what ``make demo`` runs) trains, then serves."""
    port = support.free_port()
    tags_url = f"http://127.0.0.1:{port}/data/plugin/rnn_units/tags"
    command = [sys.executable, "-m", "demo", "--logdir", str(tmp_path), *TINY_DIGITS_ARGS,
               "--serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)

    def serving():
        if process.poll() is not None:
            raise RuntimeError(f"the demo exited with {process.returncode}")
        try:
            return support.get(tags_url, timeout=5)
        except OSError:  # not listening yet
            return None

    try:
        status, body = support.wait_for(serving, timeout=120, what="the demo's TensorBoard")
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
        print(output)  # shown by pytest when the test fails
    assert status == 200, output
    assert json.loads(body)["digits"][demo_main.TAG]["units"] == 12
    assert f"TensorBoard is serving the demo at http://127.0.0.1:{port}/#rnn_units" in output
