"""Helpers shared by the tests: write real event files, run the real ``tensorboard``.

Import as ``import support`` (pytest puts ``tests/`` on ``sys.path``).
"""

import contextlib
import glob
import json
import os
import pathlib
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata

TAG = "rnn/units"
# What the format-v1 code decoded from the fixture logdir (tests/fixtures/README.md).
V1_EXPECTED = os.path.join(os.path.dirname(__file__), "fixtures", "v1_expected.npz")
V1_FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "v1_logdir"
CLASS_NAMES = ["low", "high"]

# The MNIST test split the team provides beside the project (never committed).
SHARED_MNIST = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))

# Debian's Chromium, driven by Playwright (which cannot download a browser here).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@contextlib.contextmanager
def chromium(profile, width=1280, height=900, poll_ms=1000):
    """A headless Chromium context with a fresh profile in ``profile`` (the
    browser tests' and ``benchmarks/bench_draw.py``'s); with ``poll_ms`` the
    plugin's tab looks for new steps that often instead of every 15 s."""
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": width, "height": height},
        )
        if poll_ms is not None:  # runs in every frame, the plugin's iframe too
            context.add_init_script(f"localStorage.setItem('rnn_units.poll_ms', '{poll_ms}')")
        yield context
        context.close()
needs_shared_mnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(SHARED_MNIST, "t10k-images-idx3-ubyte.gz")),
    reason=f"the MNIST test split is not at {SHARED_MNIST}",
)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=60.0, interval=0.2, what=None):
    """Polls ``predicate()`` until it returns something truthy, and returns that.

    Raises:
      TimeoutError: ``predicate`` stayed falsy for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
    return result


def get(url, timeout=30.0):
    """``(status, body bytes)`` of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def tensorboard(logdir, load_fast, extra_args=(), timeout=90.0):
    """Runs the real ``tensorboard`` command on a free loopback port.

    Yields the base URL (``http://127.0.0.1:PORT``) once TensorBoard serves
    and lists this plugin; the process is stopped on exit (terminate, then
    kill). Reloads the logdir every second so new data shows up fast.

    Args:
      logdir: the directory of runs.
      load_fast: ``True`` for RustBoard (the default loader), ``False`` for
        the Python loader.
      extra_args: more command-line arguments, e.g.
        ``("--samples_per_plugin", "rnn_units=20")``.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "tensorboard.main",
        "--logdir", str(logdir),
        "--host", "127.0.0.1",
        "--port", str(port),
        f"--load_fast={'true' if load_fast else 'false'}",
        "--reload_interval", "1",
        *extra_args,
    ]
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:

            def serving():
                if process.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    raise RuntimeError(f"tensorboard exited with {process.returncode}:\n{output}")
                try:
                    status, body = get(f"{base_url}/data/plugins_listing", timeout=5)
                except OSError:  # not listening yet
                    return False
                return status == 200 and b'"rnn_units"' in body

            wait_for(serving, timeout, what=f"tensorboard on {base_url}")
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def unpack_wire(buffer, with_axes=False):
    """Decodes the plugin's wire format (docs/CONTRACTS.md), asserting its layout.

    Written from the contract, not from ``wire.py``, so it checks the encoder.

    Returns:
      ``(header without "arrays", {name: numpy array})``, and ``{name: axes}``
      third when ``with_axes``.
    """
    (n,) = struct.unpack_from("<I", buffer)
    header = json.loads(buffer[4 : 4 + n].decode("utf-8"))
    arrays, end = {}, 4 + n
    specs = header.pop("arrays")
    for spec in specs:
        offset, size = spec["offset"], int(np.prod(spec["shape"]))
        assert offset % 8 == 0 and offset >= end and not any(buffer[end:offset])
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        assert spec["nbytes"] == size * dtype.itemsize
        arrays[spec["name"]] = np.frombuffer(buffer, dtype, size, offset).reshape(spec["shape"])
        end = offset + spec["nbytes"]
    assert end <= len(buffer)
    if with_axes:
        return header, arrays, {spec["name"]: spec["axes"] for spec in specs}
    return header, arrays


def decode_logged_step(blobs, run_dir=None):
    """``(header, {name: numpy array})`` of one logged step, from its blobs
    (and its data file in ``run_dir``), whatever the format version.

    Written from the format's description in ``metadata``'s docstring, not
    from its code, so it checks the encoder.
    """
    header = json.loads(blobs[0].decode("utf-8"))
    if header["version"] == 1:
        return header, {
            spec["name"]: np.frombuffer(blobs[1], spec["dtype"], int(np.prod(spec["shape"])), spec["offset"])
            .reshape(spec["shape"]) for spec in header["arrays"]
        }
    if header["file"] is None:
        data = b"".join(blobs[1:])
        assert len(blobs[1]) % 8 == 0, "the shared part is padded to 8 bytes"
    else:
        assert len(blobs) == 1, "a step with a data file has only its header in the event"
        with open(os.path.join(run_dir, "plugins", "rnn_units", header["file"]), "rb") as f:
            data = f.read()
    in_records = lambda spec: "unit" in spec["axes"] and spec.get("chunked", True)
    arrays, offset = {}, 0
    for spec in header["arrays"]:  # the shared part: every array not in the unit records
        if not in_records(spec):
            offset += -offset % 8
            count = int(np.prod(spec["shape"]))
            arrays[spec["name"]] = np.frombuffer(data, "<" + np.dtype(spec["dtype"]).str[1:], count, offset).reshape(spec["shape"])
            offset += count * np.dtype(spec["dtype"]).itemsize
    records = offset + -offset % 8
    fields, size = [], 0  # one record per unit: each array's slice at its item size's alignment
    for spec in header["arrays"]:
        if in_records(spec):
            axis = spec["axes"].index("unit")
            rest = spec["shape"][:axis] + spec["shape"][axis + 1 :]
            dtype = np.dtype(spec["dtype"]).newbyteorder("<")
            size += -size % dtype.itemsize
            fields.append((spec, axis, rest, dtype, size))
            size += dtype.itemsize * int(np.prod(rest))
    size = max(8, size + -size % 8)
    units = header["units"]
    assert len(data) == records + units * size, "nothing after the last record"
    for spec, axis, rest, dtype, at in fields:
        rows = [np.frombuffer(data, dtype, int(np.prod(rest)), records + u * size + at).reshape(rest)
                for u in range(units)]
        arrays[spec["name"]] = np.stack(rows, axis=axis)
    return header, arrays


def read_logged_steps(run_dir, tag=TAG):
    """``{step: (header, arrays)}`` of ``tag`` in ``run_dir``, read with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["tensors"]:
        return {}
    return {
        event.step: decode_logged_step(list(event.tensor_proto.string_val), run_dir)
        for event in accumulator.Tensors(tag)
    }


def logged_arrays(features, tag=TAG, served=True):
    """The arrays of one step as the summary API encodes them; with ``served``,
    those ``/features`` serves (not ``metadata.ANALYSIS_ARRAYS`` nor the probe's data)."""
    summary = rnn_units.rnn_units_pb(tag, features)
    arrays = decode_logged_step(list(summary.value[0].tensor.string_val))[1]
    undrawn = (*metadata.ANALYSIS_ARRAYS, metadata.PROBE_ARRAY)
    return {k: v for k, v in arrays.items() if not (served and k in undrawn)}


def summary_writer(run_dir):
    """A ``SummaryWriter`` for ``run_dir`` whose event file sorts after the run's earlier ones.

    TensorBoard reads a run's event files in name order and takes a step that
    goes back for a restart, dropping the later steps. A file name ends in
    its creation second and a per-process counter, and ``...9`` sorts after
    ``...10``: a second writer in the same second could be read first. So a
    run that already has event files gets its next one in the next second.
    """
    if glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        time.sleep(1.01 - time.time() % 1.0)
    return SummaryWriter(run_dir)


def write_run(
    logdir,
    run,
    steps,
    tag=TAG,
    units=6,
    input_size=3,
    window=4,
    length=10,
    rollout=3,
    variants=3,
    seed=0,
    weightings=None,
):
    """Writes real event files for ``run`` through the project's summary API.

    ``variants`` tiny random ``nn.RNN`` models are measured with
    ``add_rnn_units`` on a small labelled probe; later steps reuse those
    features with ``add_unit_features`` in turn, so hundreds of steps take a
    few seconds and neighbouring steps differ.

    Args:
      steps: the global steps to log, increasing.
      weightings: passed to ``add_rnn_units`` unless ``None`` (its default).

    Returns:
      ``{step: UnitFeatures}`` of what was logged.
    """
    generator = torch.Generator().manual_seed(seed)
    sequences = torch.randn(8, length, input_size, generator=generator)
    labels = (sequences[:, :, 0].mean(dim=1) > 0).long()
    probe = rnn_units.Probe(sequences, window=window, labels=labels, class_names=CLASS_NAMES)
    with torch.random.fork_rng():  # seeded models; the caller's RNG untouched
        torch.manual_seed(seed)
        models = [
            (torch.nn.RNN(input_size, units, batch_first=True), torch.nn.Linear(units, input_size))
            for _ in range(variants)
        ]
    options = {} if weightings is None else {"weighting": weightings}
    logged, computed = {}, []
    with summary_writer(os.path.join(logdir, run)) as writer:
        for i, step in enumerate(steps):
            if i < variants:
                rnn, readout = models[i]
                features = rnn_units.add_rnn_units(
                    writer, tag, rnn, probe, readout=readout, rollout=rollout, global_step=step,
                    **options,
                )
                computed.append(features)
            else:
                features = computed[i % variants]
                rnn_units.add_unit_features(writer, tag, features, global_step=step)
            logged[step] = features
    return logged


def python_loader_client(path, samples=0):
    """A werkzeug client of the plugin inside ``TensorBoardWSGI``, over
    TensorBoard's Python loader reading the logdir ``path`` (keeping
    ``samples`` steps per tag; 0: every step)."""
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from werkzeug import test as werkzeug_test

    from tensorboard_rnn_units import plugin

    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"rnn_units": samples})
    multiplexer.AddRunsFromDirectory(str(path))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(path))
    context = base_plugin.TBContext(data_provider=provider, logdir=str(path), sampling_hints={"rnn_units": samples})
    return werkzeug_test.Client(
        application.TensorBoardWSGI([plugin.RnnUnitsLoader().load(context)], data_provider=provider)
    )


def dense_and_sparse(run, monkeypatch):
    """``(dense, sparse)``: ``run()``'s features with every weighted sum taken as a dense product,
    then with every weighting's weights sparse and every product through a sparse matrix
    (``weights.SparseWeights``)."""
    from tensorboard_rnn_units import weights

    monkeypatch.setattr(weights, "SPARSE_SHARE", 0.0)  # dense weights
    dense = run()
    monkeypatch.setattr(weights, "SPARSE_SHARE", 1.0)  # sparse weights, "relu"'s too
    monkeypatch.setattr(weights, "SPARSE_COLUMNS", 0)
    return dense, run()
