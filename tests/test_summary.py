"""Writer -> event file -> TensorBoard's readers -> the same arrays."""

import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tensorboard.backend.event_processing import data_provider, event_accumulator, plugin_event_multiplexer
from tensorboard import context
from tensorboard.compat.proto import summary_pb2

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata
from tensorboard_rnn_units import summary


def _features(scale=1.0, seed=0, **kwargs):
    """Features of a seeded 2-layer LSTM on a fixed probe (scaled by ``scale``)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        rnn = nn.LSTM(3, 6, num_layers=2)
        head = nn.Linear(6, 3)
    x = torch.rand(5, 8, 3, generator=torch.Generator().manual_seed(0)) * scale
    probe = rnn_units.Probe(x, 3, labels=[0, 1, 2, 1, 0], class_names=["zero", "one", "two"])
    return rnn_units.compute_unit_features(rnn, probe, readout=head, rollout=2, **kwargs)


def _assert_arrays_match(arrays, features):
    for name, w in features.weighted.items():
        np.testing.assert_allclose(arrays[f"{name}/average"], w.average.numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(arrays[f"{name}/rollout"], w.rollout.numpy(), rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(arrays[f"{name}/position_share"], w.position_share.numpy(), rtol=1e-6)
        np.testing.assert_allclose(arrays[f"{name}/class_weight"], w.class_weight.numpy(), rtol=1e-6)
        np.testing.assert_allclose(arrays[f"{name}/effective_sample_size"], w.effective_sample_size.numpy(), rtol=1e-6)
        np.testing.assert_array_equal(arrays[f"{name}/dead"], w.dead.numpy())
    np.testing.assert_allclose(arrays["mean_window"], features.mean_window.numpy(), rtol=1e-3)
    np.testing.assert_allclose(arrays["class_counts"], features.class_counts.numpy())
    assert arrays["top/average"].dtype == np.float16


def test_round_trip_event_accumulator_and_data_provider(tmp_path):
    steps = [0, 5, 10]
    written = {}
    with SummaryWriter(tmp_path / "run") as writer:
        for step in steps:
            written[step] = _features(seed=step)
            rnn_units.add_unit_features(writer, "rnn/units", written[step], global_step=step)

    acc = event_accumulator.EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.SummaryMetadata("rnn/units").data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert [e.step for e in acc.Tensors("rnn/units")] == steps  # every step has a record
    for step, (header, arrays) in support.read_logged_steps(tmp_path / "run", "rnn/units").items():
        assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (6, 3, 2, 3)
        assert header["class_names"] == ["zero", "one", "two"] and header["weightings"] == ["top", "relu"]
        assert header["probe_fingerprint"] == written[step].probe_fingerprint
        _assert_arrays_match(arrays, written[step])

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    assert list(multiplexer.Runs()) == ["run"]  # plugins/rnn_units/ is no run of its own
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    ctx = context.RequestContext()
    listing = provider.list_blob_sequences(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    desc = metadata.parse_plugin_metadata(listing["run"]["rnn/units"].plugin_content)
    assert desc["units"] == 6 and desc["positions"] == 6 and desc["signal"] == "hidden"
    assert sorted(desc) == sorted(metadata.LAYOUT_KEYS + ("version",))  # the layout only
    data = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=100,
        run_tag_filter=None,
    )["run"]["rnn/units"]
    assert [d.step for d in data] == steps
    blobs = [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in data[-1].values]
    _assert_arrays_match(support.decode_logged_step(blobs, tmp_path / "run")[1], written[10])


def test_tensorboardx_writer_works_too(tmp_path):
    tensorboardX = pytest.importorskip("tensorboardX")
    features = _features()
    with tensorboardX.SummaryWriter(str(tmp_path / "run")) as writer:
        rnn_units.add_unit_features(writer, "u", features, global_step=3)
        probe = rnn_units.Probe(torch.rand(3, 5, 2), 2)
        rnn_units.add_rnn_units(writer, "v", nn.GRU(2, 4), probe, global_step=4)
    [(step, (_, arrays))] = support.read_logged_steps(tmp_path / "run", "u").items()
    assert step == 3
    _assert_arrays_match(arrays, features)
    assert list(support.read_logged_steps(tmp_path / "run", "v")) == [4]


def test_step_is_keyword_only_and_required(tmp_path):
    """``add_rnn_units(writer, tag, rnn, probe, 100)`` used to log step 0 with readout=100."""
    probe = rnn_units.Probe(torch.rand(3, 5, 2), 2)
    with SummaryWriter(tmp_path) as writer:
        with pytest.raises(TypeError, match="positional argument"):
            rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 4), probe, 100)
        with pytest.raises(TypeError, match="global_step"):
            rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 4), probe)
        with pytest.raises(TypeError, match="positional argument"):
            rnn_units.add_unit_features(writer, "u", _features(), 100)
        with pytest.raises(ValueError, match=r"global_step: expected an integer in 0\.\.9223372036854775807, got None"):
            rnn_units.add_unit_features(writer, "u", _features(), global_step=None)
        with pytest.raises(ValueError, match=r"global_step: expected an integer in 0\.\.9223372036854775807, got 9223372036854775808"):
            rnn_units.add_unit_features(writer, "u", _features(), global_step=2**63)
        rnn_units.add_unit_features(writer, "u", _features(), global_step=5)  # the refused steps were not remembered
    assert list(support.read_logged_steps(tmp_path, "u")) == [5]


def test_weighting_has_one_name_everywhere(tmp_path):
    probe = rnn_units.Probe(torch.rand(3, 5, 2), 2)
    with SummaryWriter(tmp_path) as writer:
        features = rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 4), probe, global_step=0, weighting="relu")
    assert features.weightings == ("relu",)
    [(header, arrays)] = support.read_logged_steps(tmp_path, "u").values()
    assert header["weightings"] == ["relu"] and "top/average" not in arrays


def test_a_layout_change_under_a_tag_is_refused_naming_tag_and_field(tmp_path):
    rnn = nn.RNN(2, 4)
    with SummaryWriter(tmp_path) as writer:
        rnn_units.add_rnn_units(writer, "u", rnn, rnn_units.Probe(torch.rand(3, 5, 2), 2), global_step=0)
        with pytest.raises(ValueError, match=r"tag 'u': window is 3, but this writer logged 2 under it before;.*new tag"):
            rnn_units.add_rnn_units(writer, "u", rnn, rnn_units.Probe(torch.rand(3, 5, 2), 3), global_step=1)
        with pytest.raises(ValueError, match=r"tag 'u': probe_fingerprint is '[0-9a-f]{16}'"):
            rnn_units.add_rnn_units(writer, "u", rnn, rnn_units.Probe(torch.rand(3, 5, 2), 2), global_step=1)
        with pytest.raises(ValueError, match=r"tag 'u': units is 5"):
            rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 5), rnn_units.Probe(torch.rand(3, 5, 2), 2), global_step=1)
        rnn_units.add_rnn_units(writer, "u2", nn.RNN(2, 5), rnn_units.Probe(torch.rand(3, 5, 2), 2), global_step=1)
    assert list(support.read_logged_steps(tmp_path, "u")) == [0]  # nothing refused was written


def test_summary_proto_carries_tag_and_description():
    summary = rnn_units.rnn_units_pb("rnn/units", _features(), description="layer **1**")
    [value] = summary.value
    assert value.tag == "rnn/units" and value.metadata.display_name == "rnn/units"
    assert value.metadata.summary_description == "layer **1**"
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME


def test_inline_steps_split_units_into_chunks():
    features = _features()
    header, shared, chunks = metadata.encode_step(
        dict(summary.layout(features), weightings=["top", "relu"], top_fraction=0.02),
        summary.step_arrays(features), chunk_bytes=1,
    )
    assert header["chunk_units"] == 1 and len(chunks) == 6  # one unit a chunk at this size
    layout = metadata.StepLayout(header)
    for unit, chunk in enumerate(chunks):
        arrays = layout.decode_units(chunk, unit, unit + 1)
        np.testing.assert_array_equal(arrays["relu/average"][0][0], metadata.compact_float(features["relu"].average[unit].numpy()))
        assert arrays["relu/average"][1] == ["unit", "window", "input"]
    blobs = list(rnn_units.rnn_units_pb("t", features).value[0].tensor.string_val)
    default = json.loads(blobs[0])
    assert len(blobs) == 2 + -(-6 // default["chunk_units"])


def test_a_data_file_holds_exactly_its_arrays(tmp_path):
    features = _features()
    with SummaryWriter(tmp_path) as writer:
        rnn_units.add_unit_features(writer, "u", features, global_step=7)
    [(header, arrays)] = support.read_logged_steps(tmp_path, "u").values()
    folder = tmp_path / "plugins" / "rnn_units"
    assert sorted(p.name for p in folder.iterdir()) == sorted([header["file"], header["probe"]["file"]])
    path = folder / header["file"]
    assert path.name.startswith("000000000007-")
    array_bytes = sum(array.nbytes for array in arrays.values())
    assert array_bytes <= path.stat().st_size <= array_bytes + 8 * (len(arrays) + 6 * len(arrays))
    # The probe's data, once per run, exactly its bytes.
    probe = header["probe"]
    assert probe["file"] == f"probe-{features.probe_fingerprint}.rnnu"
    assert (folder / probe["file"]).read_bytes() == features.probe_data.numpy().astype(np.float16).tobytes()


def test_large_values_fall_back_to_float32_instead_of_overflowing():
    features = _features(scale=1e6)
    _, arrays = support.decode_logged_step(list(rnn_units.rnn_units_pb("t", features).value[0].tensor.string_val))
    assert arrays["mean_window"].dtype == np.float32
    assert np.isfinite(arrays["mean_window"]).all()
    np.testing.assert_allclose(arrays["mean_window"], features.mean_window.numpy(), rtol=1e-6)


def test_steps_that_do_not_increase_warn(tmp_path):
    features = _features()
    with SummaryWriter(tmp_path) as writer:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            rnn_units.add_unit_features(writer, "a", features, global_step=1)
            rnn_units.add_unit_features(writer, "a", features, global_step=2)
            rnn_units.add_unit_features(writer, "b", features, global_step=1)
        with pytest.warns(UserWarning, match=r"global_step 2 for tag 'a' does not increase \(last was 2\)") as caught:
            rnn_units.add_unit_features(writer, "a", features, global_step=2)
        assert caught[0].filename == __file__  # points at the caller's line
        probe = rnn_units.Probe(torch.rand(3, 5, 3), 2)
        with pytest.warns(UserWarning, match=r"global_step 0 for tag 'c'") as caught:
            rnn_units.add_rnn_units(writer, "c", nn.RNN(3, 4), probe, global_step=1)
            rnn_units.add_rnn_units(writer, "c", nn.RNN(3, 4), probe, global_step=0)
        assert caught[0].filename == __file__


def test_add_rnn_units_logs_both_weightings_top_first(tmp_path):
    probe = rnn_units.Probe(torch.rand(3, 5, 2), 2)
    with SummaryWriter(tmp_path) as writer:
        features = rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 4), probe, global_step=0)
    assert list(features.weighted) == ["top", "relu"]
    [(header, _)] = support.read_logged_steps(tmp_path, "u").values()
    assert header["weightings"] == ["top", "relu"] and header["rollout"] == 0


LAYOUT = dict(units=2, window=3, rollout=0, input_size=4, positions=5, display="tokens", class_names=None,
              signal="hidden", layer=0, context="prefix", num_windows=10, probe_fingerprint="0" * 16,
              vocab=list("abcd"), channel_names=None, annotation_names=["in_string"], gate_names=["reset", "update"])


def test_parse_rejects_newer_versions_and_garbage():
    content = metadata.create_summary_metadata(LAYOUT).plugin_data.content
    assert metadata.parse_plugin_metadata(content) == dict(LAYOUT, version=metadata.VERSION)
    missing = metadata.create_summary_metadata(dict(LAYOUT, units=None)).plugin_data.content
    with pytest.raises(ValueError, match=r"'units' must be a non-negative integer, got None"):
        metadata.parse_plugin_metadata(missing)
    newer = json.dumps({"version": metadata.VERSION + 1}).encode()
    with pytest.raises(ValueError, match=r"newer than this tensorboard_rnn_units understands"):
        metadata.parse_plugin_metadata(newer)
    with pytest.raises(ValueError, match=r"not UTF-8 JSON"):
        metadata.parse_plugin_metadata(b"\xff{")
    with pytest.raises(ValueError, match=r"integer 'version'"):
        metadata.parse_plugin_metadata(b"[1]")


def _header(**changes):
    header, _, _ = metadata.encode_step(
        dict(LAYOUT, weightings=["relu"], top_fraction=0.02),
        {"mean_window": (np.zeros((3, 4), np.float16), ["window", "input"]),
         "relu/average": (np.zeros((2, 3, 4), np.float16), ["unit", "window", "input"])},
    )
    return json.dumps(dict(header, **changes)).encode()


@pytest.mark.parametrize("changes, words", [
    ({"arrays": [{"name": "a", "dtype": "float16", "shape": [2], "axes": []}]}, "malformed array spec"),
    ({"arrays": [{"name": "a", "dtype": "float64", "shape": [2], "axes": ["unit"]}]}, "malformed array spec"),
    ({"arrays": [{"name": "a", "dtype": "float16", "shape": [3], "axes": ["unit"]}]}, "'a' has shape [3] with axes ['unit'], but the step has 2 units"),
    ({"chunk_units": 0}, "'chunk_units' must be a positive integer"),
    ({"file": "../../etc/passwd"}, "'file' must be null or a plain file name"),
    ({"file": "a/b"}, "'file' must be null or a plain file name"),
    ({"units": -1}, "'units' must be a non-negative integer"),
])
def test_decode_header_rejects_what_it_cannot_trust(changes, words):
    assert metadata.decode_header(_header())["arrays"][1]["axes"] == ["unit", "window", "input"]
    with pytest.raises(ValueError, match=re.escape(words)):
        metadata.decode_header(_header(**changes))


def test_encode_step_checks_dtypes_and_unit_axes():
    layout = dict(LAYOUT, weightings=["relu"], top_fraction=0.02)
    with pytest.raises(ValueError, match=r"malformed array spec"):
        metadata.encode_step(layout, {"a": (np.zeros(2, np.float64), ["unit"])})
    with pytest.raises(ValueError, match=r"array 'a' has shape \[3\] with axes \['unit'\], but the step has 2 units"):
        metadata.encode_step(layout, {"a": (np.zeros(3, np.float16), ["unit"])})
    header, shared, chunks = metadata.encode_step(layout, {"a": (np.arange(6, dtype=np.float16).reshape(3, 2), ["input", "unit"])})
    arrays = metadata.StepLayout(metadata.decode_header(metadata.encode_json(header))).decode_units(b"".join(chunks), 0, 2)
    np.testing.assert_array_equal(arrays["a"][0], np.arange(6).reshape(3, 2))  # the unit axis need not be first
    with pytest.raises(ValueError, match=r"records of units 0:2 have 8 bytes, expected 16"):
        metadata.StepLayout(header).decode_units(b"".join(chunks)[:8], 0, 2)


def test_version_1_steps_decode_with_declared_axes():
    from tensorboard.backend.event_processing import event_accumulator as ea

    accumulator = ea.EventAccumulator(str(support.V1_FIXTURE / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    blobs = list(accumulator.Tensors(support.TAG)[-1].tensor_proto.string_val)
    header = metadata.decode_header(blobs[0])
    assert header["version"] == 1
    arrays = metadata.decode_v1_step(header, blobs)
    assert arrays["top/average"][1] == ["unit", "window", "input"]
    expected = np.load(support.V1_EXPECTED)
    np.testing.assert_array_equal(arrays["top/average"][0], expected["train|20|top/average"])
    with pytest.raises(ValueError, match=r"version-1 step has 1 blobs, expected 2"):
        metadata.decode_v1_step(header, blobs[:1])
    with pytest.raises(ValueError, match=r"bytes at offset"):
        metadata.decode_v1_step(header, [blobs[0], blobs[1][:-1]])
