"""Broken logdirs served by the real ``tensorboard``, with both of its loaders.

One logdir holds every kind of damage side by side, one run each, beside a
good run; one TensorBoard per loader serves it all:

- ``good``: steps 0-4, untouched;
- ``truncated``: steps 0-3, the event file cut in the middle of its last
  record (step 3);
- ``corrupt``: steps 0-4, one byte of step 2's record flipped (inside its
  step header, so the record's data checksum fails);
- ``empty``: an event file of 0 bytes;
- ``future``: a step of ``support.TAG`` and one of ``FUTURE_TAG``, whose
  format version (plugin content and step header) is newer than this
  package's;
- ``relayout``: steps 0-2 of a 4-unit RNN, then 3-5 of a 5-unit one, under
  one tag (two writers, as two processes would);
- ``short_blob``: steps 0-3, step 2's data file in ``plugins/rnn_units/`` cut
  to 16 bytes;
- ``missing_file``: steps 0-3, step 1's data file deleted;
- ``huge_step``: steps 0 and 2**62 (negative steps are refused by the API);
- ``killed``: a process logging a step at a time, flushing each, killed with
  SIGKILL after a few steps.

Every other run and step still serves; a broken step answers a 4xx (never
a 5xx) that names it; ``/problems`` names the newer-format tag.

The loaders differ on a record whose data checksum fails (``corrupt``):
RustBoard (``--load_fast=true``) keeps the record, so it lists steps 0-4 and
step 2 answers 404 "step 2 of run 'corrupt', tag ... is unreadable: step
header: not UTF-8 JSON ..."; the Python loader stops reading the file at the
bad record, so it lists only steps 0 and 1, and steps 2-4 answer 404 "no
step 2 in run 'corrupt' ..." (and 3, 4). A record cut short at the end
of a file (``truncated``, ``killed``) is an incomplete write to both: the
steps before it serve, the cut step is not listed.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import urllib.parse

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import event_pb2
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units
from tensorboard_rnn_units import metadata

pytestmark = pytest.mark.slow  # a real TensorBoard per loader

ROUTES = "/data/plugin/rnn_units"
FUTURE_TAG = "rnn/future"
HUGE_STEP = 2**62
KILLED_AFTER = 3  # steps the killed process flushed before its SIGKILL (at least)


def _event_file(run_dir):
    (name,) = [n for n in os.listdir(run_dir) if n.startswith("events.out.tfevents.")]
    return os.path.join(run_dir, name)


def _records(path):
    """``[(offset, length)]`` of each TFRecord's data in the event file at ``path``."""
    with open(path, "rb") as f:
        data = f.read()
    records, at = [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, at)
        records.append((at + 12, length))
        at += 12 + length + 4
    return data, records


def _data_file(run_dir, step):
    """Path of ``step``'s data file, from its header in the event file."""
    header, _ = support.read_logged_steps(run_dir)[step]
    return os.path.join(run_dir, *metadata.PLUGIN_DIR, header["file"])


def _write_killed(run_dir):
    """Logs steps 0, 1, 2, ... in a subprocess, flushing and printing each, and
    SIGKILLs it once ``KILLED_AFTER`` steps were flushed. Returns the flushed steps."""
    script = textwrap.dedent(f"""
        import sys, torch
        from torch.utils.tensorboard import SummaryWriter
        import tensorboard_rnn_units as rnn_units
        torch.manual_seed(0)
        probe = rnn_units.Probe(torch.randn(4, 8, 3), window=3)
        rnn = torch.nn.RNN(3, 5, batch_first=True)
        writer = SummaryWriter({run_dir!r})
        step = 0
        while True:
            rnn_units.add_rnn_units(writer, {support.TAG!r}, rnn, probe, global_step=step)
            writer.flush()
            print(step, flush=True)
            step += 1
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    flushed = []
    try:
        for line in process.stdout:
            flushed.append(int(line))
            if len(flushed) >= KILLED_AFTER:
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL and len(flushed) >= KILLED_AFTER, (process.returncode, flushed)
    return flushed


def _newer(blob):
    content = json.loads(blob)
    content["version"] = metadata.VERSION + 1
    return json.dumps(content).encode("utf-8")


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """The logdir described in the module docstring; returns ``(path, expected)`` with
    ``expected[run] = (steps each loader lists, {broken step: words its 4xx says})``."""
    path = tmp_path_factory.mktemp("broken")
    logged = {"good": support.write_run(path, "good", range(5), variants=2)}

    logged["truncated"] = support.write_run(path, "truncated", range(4), variants=2)
    event_file = _event_file(path / "truncated")
    data, records = _records(event_file)
    offset, length = records[-1]
    with open(event_file, "r+b") as f:
        f.truncate(offset + length // 2)

    logged["corrupt"] = support.write_run(path, "corrupt", range(5), variants=2)
    event_file = _event_file(path / "corrupt")
    data, records = _records(event_file)
    step_2 = [(o, n) for o, n in records if _is_step(data[o : o + n], 2)]
    assert len(step_2) == 1, "one record holds step 2"
    offset, length = step_2[0]
    # The step header's first byte: the record's first JSON (the tensor, field 8, is serialised
    # before the metadata, field 9, whose content is JSON too).
    header_at = data.index(b'{"', offset, offset + length)
    with open(event_file, "r+b") as f:
        f.seek(header_at)
        f.write(bytes([data[header_at] ^ 0xFF]))

    (path / "empty").mkdir()
    (path / "empty" / "events.out.tfevents.0.empty").write_bytes(b"")

    logged["future"] = support.write_run(path, "future", [0], variants=1)
    future = rnn_units.rnn_units_pb(FUTURE_TAG, logged["future"][0])
    value = future.value[0]
    value.metadata.plugin_data.content = _newer(value.metadata.plugin_data.content)
    value.tensor.string_val[0] = _newer(value.tensor.string_val[0])
    with support.summary_writer(str(path / "future")) as writer:
        writer._get_file_writer().add_summary(future, global_step=0)

    relayout = {}
    with torch.random.fork_rng():
        torch.manual_seed(1)
        probe = rnn_units.Probe(torch.randn(3, 8, 2), window=3)
        rnns = [torch.nn.RNN(2, units, batch_first=True) for units in (4, 5)]
    for steps, rnn in ((range(3), rnns[0]), (range(3, 6), rnns[1])):
        with support.summary_writer(str(path / "relayout")) as writer:
            for step in steps:
                relayout[step] = rnn_units.add_rnn_units(writer, support.TAG, rnn, probe, global_step=step)
    logged["relayout"] = relayout

    logged["short_blob"] = support.write_run(path, "short_blob", range(4), variants=2)
    blob = _data_file(path / "short_blob", 2)
    with open(blob, "r+b") as f:  # into the first unit's record (a reader reads only the ranges it needs)
        f.truncate(16)

    logged["missing_file"] = support.write_run(path, "missing_file", range(4), variants=2)
    os.remove(_data_file(path / "missing_file", 1))

    logged["huge_step"] = support.write_run(path, "huge_step", [0, HUGE_STEP], variants=2)
    with SummaryWriter(str(tmp_path_factory.mktemp("negative"))) as writer, pytest.raises(ValueError, match="global_step"):
        rnn_units.add_unit_features(writer, support.TAG, logged["huge_step"][0], global_step=-1)

    flushed = _write_killed(str(path / "killed"))
    # The process may have flushed a step or two more before the signal landed.
    killed = sorted(support.read_logged_steps(path / "killed"))
    assert set(flushed) <= set(killed) and killed == list(range(len(killed))), (flushed, killed)

    expected = {
        # run: ({load_fast: steps listed}, {broken step: words its answer holds})
        "good": ({True: [0, 1, 2, 3, 4], False: [0, 1, 2, 3, 4]}, {}),
        "truncated": ({True: [0, 1, 2], False: [0, 1, 2]}, {3: ["no step 3"]}),
        "corrupt": ({True: [0, 1, 2, 3, 4], False: [0, 1]}, {2: ["step 2"]}),
        "future": ({True: [0], False: [0]}, {}),
        "relayout": ({True: list(range(6)), False: list(range(6))}, {}),
        "short_blob": ({True: [0, 1, 2, 3], False: [0, 1, 2, 3]}, {2: ["step 2", "unreadable"]}),
        "missing_file": ({True: [0, 1, 2, 3], False: [0, 1, 2, 3]}, {1: ["step 1", "missing"]}),
        "huge_step": ({True: [0, HUGE_STEP], False: [0, HUGE_STEP]}, {}),
        "killed": ({True: killed, False: killed}, {}),
    }
    return path, logged, expected


def _is_step(record, step):
    """Whether a serialized ``Event`` record is a summary of ``step``."""
    event = event_pb2.Event.FromString(record)
    return event.step == step and event.HasField("summary")


@pytest.fixture(scope="module")
def server(broken, request):
    """``(base URL, load_fast)`` of one TensorBoard serving ``broken``, once it has loaded every run."""
    path, _, expected = broken
    load_fast = request.param
    with support.tensorboard(path, load_fast) as base_url:

        def loaded():
            for run, (listed, _) in expected.items():
                status, body = _get(base_url, "/steps", run=run, tag=support.TAG)
                if status != 200 or [s["step"] for s in json.loads(body)][-1:] != listed[load_fast][-1:]:
                    return False
            return True

        support.wait_for(loaded, 90, what="every run loaded")
        yield base_url, load_fast


LOADERS = pytest.mark.parametrize("server", [True, False], ids=["rustboard", "python"], indirect=True)


def _get(base_url, route, **params):
    return support.get(f"{base_url}{ROUTES}{route}?{urllib.parse.urlencode(params)}", timeout=60)


@LOADERS
def test_every_good_step_serves_its_data_and_every_broken_one_says_which(server, broken):
    base_url, load_fast = server
    _, logged, expected = broken
    status, body = _get(base_url, "/tags")
    assert status == 200
    tags = json.loads(body)
    assert sorted(tags) == sorted(expected), "every run with a readable step is listed, the empty one not"
    assert sorted(tags["future"]) == [support.TAG]
    assert tags["relayout"][support.TAG]["units"] == 5  # the latest layout
    for run, (listed, broken_steps) in expected.items():
        status, body = _get(base_url, "/steps", run=run, tag=support.TAG)
        assert status == 200, (run, body)
        assert [s["step"] for s in json.loads(body)] == listed[load_fast], run
        for step in listed[load_fast]:
            status, body = _get(base_url, "/features", run=run, tag=support.TAG, step=step)
            if step in broken_steps:
                continue
            assert status == 200, (run, step, body[:300])
            header, arrays = support.unpack_wire(body)
            assert header["step"] == step
            if run == "killed":
                assert header["units"] == 5 and np.isfinite(arrays["top/average"].astype(np.float32)).all()
                continue
            want = support.logged_arrays(logged[run][step])
            assert sorted(arrays) == sorted(want), (run, step)
            for name, array in want.items():
                np.testing.assert_array_equal(arrays[name], array, err_msg=f"{run} {step} {name}")
        for step in sorted(set(logged.get(run, ())) - set(listed[load_fast]) - set(broken_steps)):
            status, body = _get(base_url, "/features", run=run, tag=support.TAG, step=step)
            assert status == 404 and f"no step {step} in run".encode() in body, (run, step, status, body[:300])
        for step, words in broken_steps.items():
            status, body = _get(base_url, "/features", run=run, tag=support.TAG, step=step)
            text = body.decode(errors="replace")
            assert 400 <= status < 500, (run, step, status, text[:300])
            for word in words:
                assert word in text, (run, step, text[:300])


@LOADERS
def test_broken_steps_leave_a_units_filmstrip_and_the_comparisons(server, broken):
    base_url, load_fast = server
    _, _, expected = broken
    for run, (listed, broken_steps) in expected.items():
        status, body = _get(base_url, "/unit", run=run, tag=support.TAG, unit=0)
        assert status == 200, (run, body[:300])
        header, _ = support.unpack_wire(body)
        shown = set(header["steps"]) | set(header["other_layout_steps"])
        unreadable = {u["step"] for u in header["unreadable_steps"]}
        assert shown | unreadable == set(listed[load_fast]), run
        assert unreadable == set(broken_steps) & set(listed[load_fast]), run
        for route in ("/drift", "/similarity", "/coverage"):
            status, body = _get(base_url, route, run=run, tag=support.TAG)
            assert status < 500, (run, route, status, body[:300])


@LOADERS
def test_problems_name_the_newer_format_tag(server):
    base_url, _ = server
    status, body = _get(base_url, "/problems")
    assert status == 200
    problems = json.loads(body)
    assert [(p["run"], p["tag"]) for p in problems] == [("future", FUTURE_TAG)]
    assert "upgrade" in problems[0]["reason"]
    status, body = _get(base_url, "/steps", run="future", tag=FUTURE_TAG)
    assert status == 404 and FUTURE_TAG.encode() in body
