"""The plugin's routes, end to end inside one process.

Events written with the project's API -> TensorBoard's Python data provider
-> ``TensorBoardWSGI`` -> werkzeug test client. The real ``tensorboard``
command, with both loaders, is in ``test_tensorboard_process.py``.
"""

import argparse
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter
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
from tensorboard_rnn_units import reader
from tensorboard_rnn_units import summary
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
    assert sorted(tags) == ["mixed", "resized", "shrunk", "train", "v1"]
    assert sorted(tags["mixed"]) == [logdir.inline_tag, support.TAG]  # the newer-version tag is skipped
    description = tags["train"][support.TAG]
    features = logdir.train[max(logdir.train)]
    assert description == summary_description(features)
    shapes = {k: description[k] for k in ("units", "window", "rollout", "input_size", "positions")}
    assert shapes == {"units": 6, "window": 4, "rollout": 3, "input_size": 3, "positions": 7}
    assert description["weightings"] == ["top", "relu"]
    assert description["class_names"] == support.CLASS_NAMES
    assert description["probe_fingerprint"] == features.probe_fingerprint and len(features.probe_fingerprint) == 16


def test_tags_describe_each_tags_latest_layout(client):
    """A layer resized under one tag (by another process) is described as it is now."""
    tags = get_ok(client, "/tags", "application/json").json
    assert tags["resized"][support.TAG]["units"] == 5
    assert tags["shrunk"][support.TAG]["units"] == 4
    assert tags["v1"][support.TAG]["version"] == 1 and tags["v1"][support.TAG]["units"] == 5


def summary_description(features):
    header = rnn_units.rnn_units_pb(support.TAG, features).value[0].tensor.string_val[0]
    return metadata.describe(metadata.decode_header(header))


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


@pytest.mark.parametrize("units, expected", [("2:5", (2, 5)), ("4:", (4, 6)), (":1", (0, 1)), ("5:99", (5, 6)), (":", (0, 6))])
def test_features_of_a_unit_range(client, logdir, units, expected):
    response = get_ok(
        client, f"/features?run=train&tag={support.TAG}&step=517&units={units}", "application/octet-stream"
    )
    header, arrays, axes = support.unpack_wire(response.get_data(), with_axes=True)
    start, stop = expected
    assert header["unit_range"] == [start, stop] and header["units"] == 6
    logged = support.logged_arrays(logdir.train[517])
    assert list(arrays) == list(logged)
    for name, array in logged.items():
        if name in SHARED_ARRAYS:
            assert "unit" not in axes[name]
            np.testing.assert_array_equal(arrays[name], array, err_msg=name)
        else:
            assert axes[name][0] == "unit"
            np.testing.assert_array_equal(arrays[name], array[start:stop], err_msg=name)
    assert axes["top/average"] == ["unit", "window", "input"]
    assert axes["top/position_share"] == ["unit", "end_position"]


# The arrays without a unit axis.
SHARED_ARRAYS = ("mean_window", "mean_rollout", "class_counts", "top/units_per_class", "relu/units_per_class")


def test_inline_steps_are_served_like_file_steps(client, logdir):
    response = get_ok(
        client, f"/features?run=mixed&tag={logdir.inline_tag}&step=0&units=1:3", "application/octet-stream"
    )
    header, arrays = support.unpack_wire(response.get_data())
    logged = support.logged_arrays(logdir.train[0])
    assert header["unit_range"] == [1, 3]
    np.testing.assert_array_equal(arrays["relu/rollout"], logged["relu/rollout"][1:3])
    np.testing.assert_array_equal(arrays["mean_window"], logged["mean_window"])


def test_version_1_logs_still_serve_every_array(client):
    expected = np.load(support.V1_EXPECTED)
    for step in (0, 10, 20):
        header, arrays = support.unpack_wire(get_ok(
            client, f"/features?run=v1&tag={support.TAG}&step={step}", "application/octet-stream"
        ).get_data())
        assert header["version"] == 1 and header["unit_range"] == [0, 5]
        names = [key.split("|")[2] for key in expected if key.startswith(f"train|{step}|")]
        assert list(arrays) == names
        for name in names:
            np.testing.assert_array_equal(arrays[name], expected[f"train|{step}|{name}"], err_msg=name)
    header, arrays = support.unpack_wire(get_ok(
        client, f"/unit?run=v1&tag={support.TAG}&unit=3", "application/octet-stream"
    ).get_data())
    assert header["steps"] == [0, 10, 20] and header["other_layout_steps"] == []
    np.testing.assert_array_equal(arrays["top/average"][2], expected["train|20|top/average"][3])


def test_unit_slices_one_unit_across_all_steps(client, logdir):
    unit = 4
    response = get_ok(
        client, f"/unit?run=train&tag={support.TAG}&unit={unit}", "application/octet-stream"
    )
    header, arrays, axes = support.unpack_wire(response.get_data(), with_axes=True)
    assert axes["top/average"] == ["step", "window", "input"] and axes["signal_max"] == ["step"]
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
                arrays[name][i], array if name in SHARED_ARRAYS else array[unit], err_msg=name
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


@pytest.mark.parametrize("run, unit", [("train", 6), ("train", 10**9), ("resized", 5), ("train", -1)])
def test_unit_out_of_range_reads_only_step_headers_once(logdir, loaded, run, unit):
    provider, sampling_hints = loaded
    counting = CountingProvider(provider)
    context = base_plugin.TBContext(
        data_provider=counting, logdir=str(logdir.path), sampling_hints=sampling_hints
    )
    rnn_plugin = plugin.RnnUnitsLoader().load(context)
    steps = len(rnn_plugin.steps_impl(request_context.RequestContext(), "", run, support.TAG))
    for reads in (steps, 0):  # one header blob per step, then none: headers are cached
        counting.reads = 0
        with pytest.raises(errors.NotFoundError, match=f"unit {unit} out of range"):
            rnn_plugin.unit_impl(request_context.RequestContext(), "", run, support.TAG, unit)
        assert counting.reads == reads


def test_unit_of_a_resized_layer_stacks_the_steps_that_have_it(client, logdir):
    """Never a 404 for a unit that exists: the steps with it are served, the others listed."""
    response = get_ok(client, f"/unit?run=resized&tag={support.TAG}&unit=4", "application/octet-stream")
    header, arrays = support.unpack_wire(response.get_data())
    assert header["steps"] == [3, 4, 5] and header["other_layout_steps"] == [0, 1, 2]
    assert header["units"] == 5
    assert arrays["relu/average"].shape == (3, 3, 2)
    np.testing.assert_array_equal(
        arrays["relu/average"][0], support.logged_arrays(logdir.resized[3])["relu/average"][4]
    )
    # The layer shrank: unit 4 is only in the older steps, and is served from them.
    response = get_ok(client, f"/unit?run=shrunk&tag={support.TAG}&unit=4", "application/octet-stream")
    header, arrays = support.unpack_wire(response.get_data())
    assert header["steps"] == [0, 1, 2] and header["other_layout_steps"] == [3, 4, 5] and header["units"] == 5
    np.testing.assert_array_equal(
        arrays["top/average"][2], support.logged_arrays(logdir.shrunk[2])["top/average"][4]
    )
    # A unit both layouts have is stacked over every step.
    header, _ = support.unpack_wire(get_ok(
        client, f"/unit?run=shrunk&tag={support.TAG}&unit=3", "application/octet-stream"
    ).get_data())
    assert header["steps"] == list(range(6)) and header["other_layout_steps"] == []


def test_arrays_of_later_versions_are_carried_by_their_declared_axes(logdir, tmp_path):
    """An optional array this package does not know (unit axis second) is served, cut by its axes."""
    features = logdir.train[0]
    arrays = summary.step_arrays(features)
    sample = np.arange(4 * 6, dtype=np.float16).reshape(4, 6)
    arrays["later/sample"] = (sample, ["sample", "unit"])
    description = dict(summary.layout(features), weightings=["top", "relu"], top_fraction=0.02)
    header, shared, chunks = metadata.encode_step(description, arrays)
    with SummaryWriter(tmp_path / "run") as writer:
        writer._get_file_writer().add_summary(summary._summary("t", header, [shared, *chunks], None), 0)
    client = support.python_loader_client(tmp_path)
    response = client.get(ROUTES + "/features?run=run&tag=t&step=0&units=2:5")
    assert response.status_code == 200, response.get_data(as_text=True)
    _, served, axes = support.unpack_wire(response.get_data(), with_axes=True)
    assert axes["later/sample"] == ["sample", "unit"]
    np.testing.assert_array_equal(served["later/sample"], sample[:, 2:5])
    np.testing.assert_array_equal(served["top/average"], support.logged_arrays(features)["top/average"][2:5])


def test_a_broken_latest_step_does_not_hide_its_tag(logdir, tmp_path):
    features = logdir.train[0]
    broken = rnn_units.rnn_units_pb("t", features)
    broken.value[0].tensor.string_val[0] = b"{not json"
    with SummaryWriter(tmp_path / "run") as writer:
        rnn_units.add_unit_features(writer, "t", features, global_step=0)
        writer._get_file_writer().add_summary(broken, 1)
    client = support.python_loader_client(tmp_path)
    assert client.get(ROUTES + "/tags").json["run"]["t"]["units"] == 6  # step 0's layout
    response = client.get(ROUTES + "/features?run=run&tag=t&step=1")
    assert response.status_code == 404 and "step 1 of run 'run', tag 't' is unreadable" in response.get_data(as_text=True)
    assert client.get(ROUTES + "/features?run=run&tag=t&step=0").status_code == 200


def test_byte_ranges_read_through_tensorboards_gfile(tmp_path):
    """The path remote logdirs take (TensorBoard's gfile cannot seek) reads the same bytes."""
    path = tmp_path / "data"
    path.write_bytes(bytes(range(100)))
    assert reader._read_range(str(path), 7, 5) == bytes(range(7, 12))
    assert reader._read_ranges(str(path), [(0, 3), (98, 2)]) == [bytes([0, 1, 2]), bytes([98, 99])]


def test_a_missing_data_file_is_a_404_that_says_so(logdir, loaded, tmp_path):
    run = tmp_path / "run"
    support.write_run(tmp_path, "run", [0, 1], units=3)
    [victim] = [p for p in (run / "plugins" / "rnn_units").iterdir() if p.name.startswith("000000000001-")]
    victim.unlink()
    client = support.python_loader_client(tmp_path)
    assert client.get(ROUTES + f"/features?run=run&tag={support.TAG}&step=0").status_code == 200
    response = client.get(ROUTES + f"/features?run=run&tag={support.TAG}&step=1")
    assert response.status_code == 404
    assert f"{victim.name} is missing" in response.get_data(as_text=True)


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
        (f"/features?run=train&tag={support.TAG}&step=1&units=3", "'units' must be START:STOP"),
        (f"/features?run=train&tag={support.TAG}&step=1&units=-1:3", "'units' must be START:STOP"),
        (f"/features?run=train&tag={support.TAG}&step=1&units=a:b", "'units' must be START:STOP"),
        (f"/features?run=train&tag={support.TAG}&step=1&units=6:9", "units=6:9 selects none of the 6 units"),
        (f"/features?run=train&tag={support.TAG}&step=1&units=3:2", "units=3:2 selects none"),
        ("/static/../plugin.py", "bad static file path"),
        ("/static/%2e%2e/metadata.py", "bad static file path"),
        ("/static/views/..%2f..%2fsetup.py", "bad static file path"),
        ("/static//etc/passwd", "bad static file path"),
        ("/static/.hidden.js", "bad static file path"),
        ("/static/a%00.js", "bad static file path"),
        ("/static/" + "a" * 300 + ".js", "bad static file path"),
        (f"/features?run=train&tag={support.TAG}&step=" + "9" * 5000, "'step' is longer than 4096 characters"),
        (f"/features?run=train&tag={support.TAG}&step=" + "9" * 50, "'step' must be an integer in the int64 range"),
        (f"/unit?run=train&tag={support.TAG}&unit=" + "1" * 4000, "'unit' must be an integer in the int64 range"),
        (f"/unit?run=train&tag={support.TAG}&unit=9223372036854775808", "'unit' must be an integer in the int64 range"),
        (f"/features?run=train&tag={support.TAG}&step=1&units=" + "1" * 5000 + ":", "'units' must be START:STOP"),
        ("/steps?tag=t&run=" + "r" * 5000, "'run' is longer than 4096 characters"),
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


def test_problems_name_the_tags_that_cannot_be_read_and_why(client, logdir):
    problems = get_ok(client, "/problems", "application/json").json
    assert problems == [{
        "run": "mixed", "tag": logdir.future_tag,
        "reason": f"plugin content: format version {metadata.VERSION + 1} is newer than this "
                  f"tensorboard_rnn_units understands ({metadata.VERSION}); upgrade the package",
    }]


def test_newer_format_is_skipped_with_one_warning(client, logdir, caplog):
    caplog.set_level(logging.WARNING, logger=reader.__name__)
    for _ in range(2):
        assert sorted(client.get(ROUTES + "/tags").json["mixed"]) == [logdir.inline_tag, support.TAG]
        response = client.get(ROUTES + f"/steps?run=mixed&tag={logdir.future_tag}")
        assert response.status_code == 404
    assert len(caplog.records) == 1
    assert f"version {metadata.VERSION + 1} is newer" in caplog.records[0].getMessage()


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


def test_static_files_never_follow_links_out_of_the_frontend(client, tmp_path, monkeypatch):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser")
    frontend = tmp_path / "frontend"
    frontend.mkdir()
    (frontend / "passwd.css").symlink_to(secret)
    (frontend / "ok.css").write_text("p{}")
    monkeypatch.setattr(plugin, "_FRONTEND", frontend)
    assert get_ok(client, "/static/ok.css", "text/css").get_data() == b"p{}"
    response = client.get(ROUTES + "/static/passwd.css")
    assert response.status_code == 404 and b"not for the browser" not in response.get_data()


def test_a_broken_step_does_not_lose_the_filmstrip(logdir, tmp_path):
    features = logdir.train[0]
    broken = rnn_units.rnn_units_pb("t", features)
    broken.value[0].tensor.string_val[1] = b"short"  # a short shared-part blob
    with SummaryWriter(tmp_path / "run") as writer:
        rnn_units.add_unit_features(writer, "t", features, global_step=0)
        writer._get_file_writer().add_summary(broken, 1)
        rnn_units.add_unit_features(writer, "t", features, global_step=2)
    client = support.python_loader_client(tmp_path)
    response = client.get(ROUTES + "/unit?run=run&tag=t&unit=3")
    assert response.status_code == 200, response.get_data(as_text=True)
    header, arrays = support.unpack_wire(response.get_data())
    assert header["steps"] == [0, 2] and header["other_layout_steps"] == []
    [problem] = header["unreadable_steps"]
    assert problem["step"] == 1 and "step 1 of run 'run', tag 't' is unreadable" in problem["reason"]
    assert arrays["top/average"].shape[0] == 2


@pytest.mark.slow
def test_a_real_install_serves_every_frontend_file(tmp_path):
    """A non-editable install (a wheel, as users get it) serves every file in ``frontend/``.

    The editable install the tests run under reads ``frontend/`` from the
    repository, so only a real install shows a file missing from ``package_data``.
    """
    source, target = tmp_path / "source", tmp_path / "site"
    # A copy, so that no build folder from an earlier install stands in for the sources.
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "runs", "tests", "benchmarks", "docs", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    files = sorted(
        str(path.relative_to(REPOSITORY / "frontend"))
        for path in (REPOSITORY / "frontend").rglob("*") if path.suffix in (".js", ".css")
    )
    code = (
        "import json, sys\n"
        "from tensorboard_rnn_units import plugin\n"
        "assert plugin.__file__.startswith(sys.argv[1]), plugin.__file__\n"
        "served = {p: plugin.RnnUnitsPlugin.static_impl(None, p)[0].decode() for p in json.loads(sys.argv[2])}\n"
        "print(json.dumps(served))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(target), json.dumps(files)],
        capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(target)),
    )
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout)
    for name in files:
        assert served[name] == (REPOSITORY / "frontend" / name).read_text(), name
    assert "index.js" in served and "app.js" in served


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
        "assert 'scipy' not in sys.modules, 'scipy was imported (0.4 s more TensorBoard start-up)'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_wire_pack_aligns_and_converts_to_little_endian():
    arrays = {
        "big": (np.arange(6, dtype=">f4").reshape(2, 3), ["unit", "input"]),
        "empty": (np.zeros((0, 4), np.float16), ["rollout", "input"]),
        "flags": (np.array([1, 0, 1], np.uint8), ["unit"]),
        "half": (np.linspace(-1, 1, 5).astype(np.float16), ["class"]),
    }
    # A long header moves the data start across several alignment steps.
    for padding in range(0, 40):
        header, decoded, axes = support.unpack_wire(wire.pack({"note": "x" * padding}, arrays), with_axes=True)
        assert header == {"note": "x" * padding}
        assert list(decoded) == list(arrays)
        for name, (array, array_axes) in arrays.items():
            np.testing.assert_array_equal(decoded[name], array)
            assert decoded[name].dtype.name == array.dtype.name
            assert axes[name] == array_axes
    with pytest.raises(ValueError, match="float64"):
        wire.pack({}, {"x": (np.zeros(2), ["unit"])})
