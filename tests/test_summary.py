"""Writer -> event file -> TensorBoard's readers -> the same arrays."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tensorboard.backend.event_processing import data_provider, event_accumulator, plugin_event_multiplexer
from tensorboard import context
from tensorboard.compat.proto import summary_pb2

import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata


def _features(scale=1.0, **kwargs):
    torch.manual_seed(0)
    rnn = nn.LSTM(3, 6, num_layers=2)
    head = nn.Linear(6, 3)
    x = torch.rand(5, 8, 3) * scale
    probe = rnn_units.Probe(x, 3, labels=[0, 1, 2, 1, 0], class_names=["zero", "one", "two"])
    return rnn_units.compute_unit_features(
        rnn, probe, readout=head, rollout=2, weighting=("top", "relu"), **kwargs
    )


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
            written[step] = _features(scale=1 + step)
            rnn_units.add_unit_features(writer, "rnn/units", written[step], global_step=step)

    acc = event_accumulator.EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.SummaryMetadata("rnn/units").data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    events = acc.Tensors("rnn/units")
    assert [e.step for e in events] == steps
    for e in events:
        header, arrays = metadata.decode_step(list(e.tensor_proto.string_val))
        assert (header["units"], header["window"], header["rollout"], header["input_size"]) == (6, 3, 2, 3)
        assert header["class_names"] == ["zero", "one", "two"] and header["weightings"] == ["top", "relu"]
        _assert_arrays_match(arrays, written[e.step])

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(tmp_path))
    ctx = context.RequestContext()
    listing = provider.list_blob_sequences(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    desc = metadata.parse_plugin_metadata(listing["run"]["rnn/units"].plugin_content)
    assert desc["units"] == 6 and desc["positions"] == 6 and desc["signal"] == "hidden"
    data = provider.read_blob_sequences(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=100,
        run_tag_filter=None,
    )["run"]["rnn/units"]
    assert [d.step for d in data] == steps
    blobs = [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in data[-1].values]
    _assert_arrays_match(metadata.decode_step(blobs)[1], written[10])


def test_summary_proto_carries_tag_and_description():
    summary = rnn_units.rnn_units_pb("rnn/units", _features(), description="layer **1**")
    [value] = summary.value
    assert value.tag == "rnn/units" and value.metadata.display_name == "rnn/units"
    assert value.metadata.summary_description == "layer **1**"
    assert value.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME


def test_large_values_fall_back_to_float32_instead_of_overflowing():
    features = _features(scale=1e6)
    summary = rnn_units.rnn_units_pb("t", features)
    _, arrays = metadata.decode_step(list(summary.value[0].tensor.string_val))
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
        with pytest.warns(UserWarning, match=r"global_step 0 for tag 'a'") as caught:
            rnn_units.add_rnn_units(writer, "a", nn.RNN(3, 4), probe, global_step=0)
        assert caught[0].filename == __file__


def test_add_rnn_units_logs_both_weightings_top_first(tmp_path):
    probe = rnn_units.Probe(torch.rand(3, 5, 2), 2)
    with SummaryWriter(tmp_path) as writer:
        features = rnn_units.add_rnn_units(writer, "u", nn.RNN(2, 4), probe, global_step=0)
    assert list(features.weighted) == ["top", "relu"]
    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    header, _ = metadata.decode_step(list(acc.Tensors("u")[0].tensor_proto.string_val))
    assert header["weightings"] == ["top", "relu"] and header["rollout"] == 0


def test_parse_rejects_newer_versions_and_garbage():
    sizes = dict(units=2, window=3, rollout=0, input_size=4, positions=5, weightings=["top"])
    content = metadata.create_summary_metadata(sizes).plugin_data.content
    assert metadata.parse_plugin_metadata(content)["units"] == 2
    missing = metadata.create_summary_metadata(dict(sizes, units=None)).plugin_data.content
    with pytest.raises(ValueError, match=r"'units' must be a non-negative integer, got None"):
        metadata.parse_plugin_metadata(missing)
    unknown = metadata.create_summary_metadata(dict(sizes, weightings=["softmax"])).plugin_data.content
    with pytest.raises(ValueError, match=r"'weightings' must be a non-empty list"):
        metadata.parse_plugin_metadata(unknown)
    newer = json.dumps({"version": metadata.VERSION + 1}).encode()
    with pytest.raises(ValueError, match=r"newer than this tensorboard_rnn_units understands"):
        metadata.parse_plugin_metadata(newer)
    with pytest.raises(ValueError, match=r"not UTF-8 JSON"):
        metadata.parse_plugin_metadata(b"\xff{")
    with pytest.raises(ValueError, match=r"integer 'version'"):
        metadata.parse_plugin_metadata(b"[1]")


def test_decode_step_rejects_inconsistent_blobs():
    arrays = {"a": np.zeros(3, np.uint8), "b": np.arange(6, dtype=np.float16).reshape(2, 3)}
    blobs = metadata.encode_step({"units": 1}, arrays)
    header, decoded = metadata.decode_step(blobs)
    assert [s["offset"] for s in header["arrays"]] == [0, 8]
    np.testing.assert_array_equal(decoded["b"], arrays["b"])
    with pytest.raises(ValueError, match=r"array 'b': 12 bytes at offset 8 of a 19-byte data blob"):
        metadata.decode_step([blobs[0], blobs[1][:-1]])
    with pytest.raises(ValueError, match=r"step has 1 blobs, expected 2"):
        metadata.decode_step(blobs[:1])
    mismatched = metadata.encode_step({"units": 4}, {"top/average": np.zeros((6, 2, 2), np.float16)})
    with pytest.raises(ValueError, match=r"'top/average': shape \[6, 2, 2\] does not start with the header's units \(4\)"):
        metadata.decode_step(mismatched)
    with pytest.raises(ValueError, match=r"dtype must be one of"):
        metadata.encode_step({}, {"a": np.zeros(2, np.float64)})
