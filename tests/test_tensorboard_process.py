"""The real ``tensorboard`` command, with both of its loaders, serving this plugin.

``--load_fast=true`` is RustBoard (the default), ``false`` the Python
loader; each keeps few steps of a third-party plugin unless told otherwise,
so seeing every step without flags proves ``RnnUnitsLoader.fix_flags``.
"""

import json
import urllib.parse

import numpy as np
import pytest

import support

LOADERS = pytest.mark.parametrize("load_fast", [True, False], ids=["rustboard", "python"])


def fetch(base_url, route, **params):
    """Body of a plugin route that must answer 200."""
    url = f"{base_url}/data/plugin/rnn_units{route}?{urllib.parse.urlencode(params)}"
    status, body = support.get(url, timeout=120)
    assert status == 200, (url, status, body[:500])
    return body


def steps_when(base_url, run, last_step, timeout=60.0):
    """The ``/steps`` listing, once TensorBoard has loaded up to ``last_step``."""

    def loaded():
        status, body = support.get(
            f"{base_url}/data/plugin/rnn_units/steps?"
            + urllib.parse.urlencode({"run": run, "tag": support.TAG})
        )
        steps = json.loads(body) if status == 200 else []
        return steps if steps and steps[-1]["step"] == last_step else None

    return support.wait_for(loaded, timeout, what=f"step {last_step} of run {run!r}")


def test_rustboard_data_server_is_installed():
    from tensorboard.data import server_ingester

    assert server_ingester.get_server_binary() is not None


@LOADERS
def test_every_logged_step_is_served_without_flags(logdir, load_fast):
    with support.tensorboard(logdir.path, load_fast) as base_url:
        steps = steps_when(base_url, "train", max(logdir.train))
        assert [s["step"] for s in steps] == sorted(logdir.train)

        tags = json.loads(fetch(base_url, "/tags"))
        assert sorted(tags) == ["mixed", "resized", "shrunk", "train", "v1"]
        assert sorted(tags["mixed"]) == [logdir.inline_tag, support.TAG]  # the newer-version tag is skipped
        assert tags["resized"][support.TAG]["units"] == 5  # the latest layout

        step = steps[-1]["step"]
        header, arrays = support.unpack_wire(
            fetch(base_url, "/features", run="train", tag=support.TAG, step=step)
        )
        assert header["step"] == step
        expected = support.logged_arrays(logdir.train[step])
        assert list(arrays) == list(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(arrays[name], array, err_msg=name)

        header, arrays = support.unpack_wire(
            fetch(base_url, "/features", run="train", tag=support.TAG, step=step, units="2:4")
        )
        assert header["unit_range"] == [2, 4]
        np.testing.assert_array_equal(arrays["relu/rollout"], expected["relu/rollout"][2:4])

        header, arrays = support.unpack_wire(
            fetch(base_url, "/unit", run="train", tag=support.TAG, unit=5)
        )
        assert header["steps"] == sorted(logdir.train)
        np.testing.assert_array_equal(arrays["top/average"][-1], expected["top/average"][5])

        header, arrays = support.unpack_wire(
            fetch(base_url, "/unit", run="resized", tag=support.TAG, unit=4)
        )
        assert header["steps"] == [3, 4, 5] and header["other_layout_steps"] == [0, 1, 2]


@LOADERS
def test_version_1_logs_are_served(load_fast):
    expected = np.load(support.V1_EXPECTED)
    with support.tensorboard(support.V1_FIXTURE, load_fast) as base_url:
        steps_when(base_url, "train", 20)
        steps_when(base_url, "relu_only", 0)
        for run, step in (("train", 20), ("relu_only", 0)):
            header, arrays = support.unpack_wire(fetch(base_url, "/features", run=run, tag=support.TAG, step=step))
            assert header["version"] == 1
            names = [key.split("|")[2] for key in expected if key.startswith(f"{run}|{step}|")]
            assert list(arrays) == names
            for name in names:
                np.testing.assert_array_equal(arrays[name], expected[f"{run}|{step}|{name}"], err_msg=name)


@LOADERS
def test_data_written_while_running_appears_and_user_samples_win(tmp_path, load_fast):
    args = ("--samples_per_plugin", "rnn_units=20")
    with support.tensorboard(tmp_path, load_fast, extra_args=args) as base_url:
        support.write_run(tmp_path, "late", range(60))
        steps = steps_when(base_url, "late", 59)
        assert len(steps) == 20


@LOADERS
def test_comparisons_are_served(logdir, load_fast):
    with support.tensorboard(logdir.path, load_fast) as base_url:
        steps_when(base_url, "train", max(logdir.train))
        header, arrays = support.unpack_wire(fetch(base_url, "/drift", run="train", tag=support.TAG))
        assert header["steps"] == sorted(logdir.train) and arrays["change"].shape == (len(logdir.train) - 1, 6)
        header, arrays = support.unpack_wire(fetch(base_url, "/similarity", run="train", tag=support.TAG))
        assert len(header["steps"]) == 100 and arrays["cka"].shape == (100, 100)
        # "mixed" logged train's step-0 features on the same probe: a perfect match.
        match = json.loads(fetch(base_url, "/match", run="train", tag=support.TAG, step=0,
                                 other_run="mixed", other_step=0))
        assert match["assignment"] == list(range(6)) and match["cka"] == pytest.approx(1, abs=1e-3)
        header, arrays = support.unpack_wire(fetch(base_url, "/coverage", run="train", tag=support.TAG))
        assert arrays["units_per_class"].shape == (len(logdir.train), 2)
