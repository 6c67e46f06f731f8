"""The plugin's routes, end to end inside one process.

Events written with the project's API -> TensorBoard's Python data provider
-> ``TensorBoardWSGI`` -> werkzeug test client. The real ``tensorboard``
command, with both loaders, is in ``test_tensorboard_process.py``.
"""

import argparse
import logging
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from werkzeug import test as werkzeug_test

from tensorboard import context as request_context
from tensorboard import errors
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins import base_plugin

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata
from tensorboard_rnn_units import plugin
from tensorboard_rnn_units import wire

ROUTES = "/data/plugin/rnn_units"
REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def loaded(logdir):
    """The Python loader over ``logdir``, sized by the plugin's own ``fix_flags``."""
    flags = argparse.Namespace(samples_per_plugin={})
    plugin.RnnUnitsLoader().fix_flags(flags)
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance=flags.samples_per_plugin
    )
    multiplexer.AddRunsFromDirectory(str(logdir.path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir.path))
    return provider, flags.samples_per_plugin


@pytest.fixture
def client(logdir, loaded):
    """A werkzeug client of a fresh plugin (fresh warning state) in ``TensorBoardWSGI``."""
    provider, sampling_hints = loaded
    context = base_plugin.TBContext(
        data_provider=provider, logdir=str(logdir.path), sampling_hints=sampling_hints
    )
    app = application.TensorBoardWSGI([plugin.RnnUnitsLoader().load(context)], data_provider=provider)
    return werkzeug_test.Client(app)


def get_ok(client, route, content_type):
    response = client.get(ROUTES + route)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].split(";")[0] == content_type
    return response


def test_plugin_is_listed_with_its_frontend(client):
    listing = client.get("/data/plugins_listing").json["rnn_units"]
    assert listing["enabled"] and listing["tab_name"] == "RNN Units"
    assert listing["loading_mechanism"] == {
        "type": "IFRAME",
        "module_path": ROUTES + "/index.js",
    }


def test_tags_describe_readable_tags_with_shapes(client, logdir):
    tags = get_ok(client, "/tags", "application/json").json
    assert sorted(tags) == ["mixed", "resized", "train"]
    assert list(tags["mixed"]) == [support.TAG]  # the newer-version tag is skipped
    description = tags["train"][support.TAG]
    features = logdir.train[0]
    assert description == summary_description(features)
    shapes = {k: description[k] for k in ("units", "window", "rollout", "input_size", "positions")}
    assert shapes == {"units": 6, "window": 4, "rollout": 3, "input_size": 3, "positions": 7}
    assert description["weightings"] == ["top", "relu"]
    assert description["class_names"] == support.CLASS_NAMES


def summary_description(features):
    content = rnn_units.rnn_units_pb(support.TAG, features).value[0].metadata.plugin_data.content
    return metadata.parse_plugin_metadata(content)


def test_steps_lists_every_logged_step_in_order(client, logdir):
    steps = get_ok(client, f"/steps?run=train&tag={support.TAG}", "application/json").json
    assert [s["step"] for s in steps] == sorted(logdir.train) == list(range(len(logdir.train)))
    wall_times = [s["wall_time"] for s in steps]
    assert all(isinstance(t, float) for t in wall_times) and wall_times == sorted(wall_times)


def test_zero_samples_per_plugin_means_every_step(logdir, loaded):
    provider, _ = loaded
    context = base_plugin.TBContext(
        data_provider=provider, logdir=str(logdir.path), sampling_hints={"rnn_units": 0}
    )
    instance = plugin.RnnUnitsLoader().load(context)
    steps = instance.steps_impl(request_context.RequestContext(), "", "train", support.TAG)
    assert [s["step"] for s in steps] == sorted(logdir.train)


@pytest.mark.parametrize("step", [0, 1, 2, 517])
def test_features_round_trip_equals_logged_arrays(client, logdir, step):
    response = get_ok(
        client, f"/features?run=train&tag={support.TAG}&step={step}", "application/octet-stream"
    )
    header, arrays = support.unpack_wire(response.get_data())
    assert header["step"] == step and isinstance(header["wall_time"], float)
    assert header["units"] == 6 and header["version"] == metadata.VERSION
    expected = support.logged_arrays(logdir.train[step])
    assert list(arrays) == list(expected)
    for name, array in expected.items():
        assert arrays[name].dtype == array.dtype, name
        np.testing.assert_array_equal(arrays[name], array, err_msg=name)


def test_unit_slices_one_unit_across_all_steps(client, logdir):
    unit = 4
    response = get_ok(
        client, f"/unit?run=train&tag={support.TAG}&unit={unit}", "application/octet-stream"
    )
    header, arrays = support.unpack_wire(response.get_data())
    steps = sorted(logdir.train)
    assert header["unit"] == unit and header["steps"] == steps
    assert len(header["wall_times"]) == len(steps) and header["units"] == 6
    assert arrays["top/average"].shape == (len(steps), 4, 3)  # (S, L, D)
    assert arrays["top/rollout"].shape == (len(steps), 3, 3)  # (S, R, D)
    assert arrays["relu/position_share"].shape == (len(steps), 7)  # (S, P)
    assert arrays["signal_max"].shape == (len(steps),)
    assert arrays["mean_window"].shape == (len(steps), 4, 3)
    for i in (0, 1, 2, len(steps) - 1):
        expected = support.logged_arrays(logdir.train[steps[i]])
        assert sorted(arrays) == sorted(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(
                arrays[name][i], array[unit] if metadata.is_per_unit(name) else array, err_msg=name
            )
    # Neighbouring steps were logged from different models.
    assert not np.array_equal(arrays["relu/average"][0], arrays["relu/average"][1])


class CountingProvider:
    """A data provider that counts the blobs read through it."""

    def __init__(self, provider):
        self._provider = provider
        self.reads = 0

    def __getattr__(self, name):
        return getattr(self._provider, name)

    def read_blob(self, ctx, *, blob_key):
        self.reads += 1
        return self._provider.read_blob(ctx, blob_key=blob_key)


@pytest.mark.parametrize(
    "run, unit, reads",
    [
        # A unit past the description's count (the first step's) reads only the
        # latest step's header blob: a rerun into the run may have more units.
        ("train", 6, 1),
        ("train", 10**9, 1),
        ("resized", 5, 1),    # described with 4 units (step 0), the latest has 5
        ("train", -1, 0),     # no layout has it: nothing read
    ],
)
def test_unit_out_of_range_answers_before_reading_the_steps(logdir, loaded, run, unit, reads):
    provider, sampling_hints = loaded
    counting = CountingProvider(provider)
    context = base_plugin.TBContext(
        data_provider=counting, logdir=str(logdir.path), sampling_hints=sampling_hints
    )
    rnn_plugin = plugin.RnnUnitsLoader().load(context)
    with pytest.raises(errors.NotFoundError, match=f"unit {unit} out of range"):
        rnn_plugin.unit_impl(request_context.RequestContext(), "", run, support.TAG, unit)
    assert counting.reads == reads
    # The last unit the latest layout has is read in full: every step of it.
    last = {"train": 5, "resized": 4}[run]
    counting.reads = 0
    header, _ = rnn_plugin.unit_impl(request_context.RequestContext(), "", run, support.TAG, last)
    assert header["unit"] == last and counting.reads >= 2 * len(header["steps"])


def test_unit_leaves_out_steps_of_an_older_layout(client, logdir):
    response = get_ok(client, f"/unit?run=resized&tag={support.TAG}&unit=4", "application/octet-stream")
    header, arrays = support.unpack_wire(response.get_data())
    assert header["steps"] == [3, 4, 5] and header["units"] == 5
    assert arrays["relu/average"].shape == (3, 3, 2)
    np.testing.assert_array_equal(
        arrays["relu/average"][0], support.logged_arrays(logdir.resized[3])["relu/average"][4]
    )


@pytest.mark.parametrize(
    "route, words",
    [
        ("/steps", "'run'"),
        (f"/steps?run=train", "'tag'"),
        (f"/steps?run=&tag={support.TAG}", "'run'"),
        (f"/features?run=train&tag={support.TAG}", "'step'"),
        (f"/features?run=train&tag={support.TAG}&step=1.5", "'step' must be an integer"),
        (f"/features?run=train&tag={support.TAG}&step=x", "'step' must be an integer"),
        (f"/features?tag={support.TAG}&step=1", "'run'"),
        (f"/unit?run=train&tag={support.TAG}", "'unit'"),
        (f"/unit?run=train&tag={support.TAG}&unit=%201", "'unit' must be an integer"),
        ("/static/../plugin.py", "bad static file path"),
        ("/static/%2e%2e/metadata.py", "bad static file path"),
        ("/static/views/..%2f..%2fsetup.py", "bad static file path"),
        ("/static//etc/passwd", "bad static file path"),
        ("/static/.hidden.js", "bad static file path"),
        ("/static/a%00.js", "bad static file path"),
    ],
)
def test_bad_requests_answer_400_saying_what(client, route, words):
    response = client.get(ROUTES + route)
    assert response.status_code == 400
    assert words in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "route, words",
    [
        (f"/steps?run=nope&tag={support.TAG}", "run 'nope'"),
        ("/steps?run=train&tag=nope", "tag 'nope'"),
        (f"/features?run=train&tag={support.TAG}&step=100000", "no step 100000"),
        (f"/features?run=train&tag={support.TAG}&step=-1", "no step -1"),
        (f"/unit?run=train&tag={support.TAG}&unit=6", "unit 6 out of range"),
        (f"/unit?run=train&tag={support.TAG}&unit=-1", "unit -1 out of range"),
        (f"/unit?run=resized&tag={support.TAG}&unit=5", "unit 5 out of range"),
        ("/static/nope.js", "no static file"),
        ("/static/__init__.py", "no static file"),  # exists, but not JS or CSS
    ],
)
def test_unknown_things_answer_404_saying_what(client, route, words):
    response = client.get(ROUTES + route)
    assert response.status_code == 404
    assert words in response.get_data(as_text=True)


def test_newer_format_is_skipped_with_one_warning(client, logdir, caplog):
    caplog.set_level(logging.WARNING, logger=plugin.__name__)
    for _ in range(2):
        assert list(client.get(ROUTES + "/tags").json["mixed"]) == [support.TAG]
        response = client.get(ROUTES + f"/steps?run=mixed&tag={logdir.future_tag}")
        assert response.status_code == 404
    assert len(caplog.records) == 1
    assert "version 2 is newer" in caplog.records[0].getMessage()


def test_static_files_have_their_mime_types(client, tmp_path, monkeypatch):
    (tmp_path / "views").mkdir()
    files = {"index.js": b"export function render() {}", "views/grid.js": b"//", "a.css": b"p{}"}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "notes.txt").write_bytes(b"text")
    monkeypatch.setattr(plugin, "_FRONTEND", tmp_path)

    for route, name, mime in [
        ("/index.js", "index.js", "text/javascript"),
        ("/static/index.js", "index.js", "text/javascript"),
        ("/static/views/grid.js", "views/grid.js", "text/javascript"),
        ("/static/a.css", "a.css", "text/css"),
    ]:
        assert get_ok(client, route, mime).get_data() == files[name]
    assert client.get(ROUTES + "/static/notes.txt").status_code == 404


def test_frontend_is_served_from_the_package(client):
    """``/index.js`` is the repository's ``frontend/index.js``, as installed."""
    response = get_ok(client, "/index.js", "text/javascript")
    assert response.get_data() == (REPOSITORY / "frontend" / "index.js").read_bytes()
    assert b"export" in response.get_data()


def test_fix_flags_defaults_the_samples_and_keeps_the_users():
    flags = argparse.Namespace(samples_per_plugin={"images": 5})
    plugin.RnnUnitsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"images": 5, "rnn_units": plugin.DEFAULT_SAMPLES}
    flags = argparse.Namespace(samples_per_plugin={"rnn_units": 20})
    plugin.RnnUnitsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"rnn_units": 20}


def test_plugin_entry_point_imports_without_torch():
    code = (
        "import sys, importlib.metadata as m\n"
        "[ep] = [e for e in m.entry_points(group='tensorboard_plugins') if e.name == 'rnn_units']\n"
        "loader = ep.load()\n"
        "assert loader.__name__ == 'RnnUnitsLoader', loader\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_wire_pack_aligns_and_converts_to_little_endian():
    arrays = {
        "big": np.arange(6, dtype=">f4").reshape(2, 3),
        "empty": np.zeros((0, 4), np.float16),
        "flags": np.array([1, 0, 1], np.uint8),
        "half": np.linspace(-1, 1, 5).astype(np.float16),
    }
    # A long header moves the data start across several alignment steps.
    for padding in range(0, 40):
        header, decoded = support.unpack_wire(wire.pack({"note": "x" * padding}, arrays))
        assert header == {"note": "x" * padding}
        assert list(decoded) == list(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(decoded[name], array)
            assert decoded[name].dtype.name == array.dtype.name
    with pytest.raises(ValueError, match="float64"):
        wire.pack({}, {"x": np.zeros(2)})
