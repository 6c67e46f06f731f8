"""Drawing the unit grid in the browser: 169 and 4,096 units.

Logs a few steps of a 169-unit and a 4,096-unit ``nn.RNN`` (L = R = 10 rows
of D = 28 inputs, a small probe) with ``add_rnn_units``, runs the real
``tensorboard`` and opens the RNN Units tab in headless Chromium (1280 x 900).
The grid's canvas says how long each redraw took in ``data-draw-ms``
(``performance.now()`` around the redraw); every value it takes is recorded.

For each layer the step is changed ``--changes`` times (the first visit to a
step fetches it, later ones redraw from the cache); a change's figure is the
redraw that completed the new step on screen. The 4,096-unit layer is then
scrolled a page at a time to the bottom and back, and zoomed in and out
(each figure: the redraw that completed it). Targets after
a step change: 16 ms for 169 units, 30 ms for 4,096. Each line prints the
median and the maximum, the target and their ratio; "every redraw" counts
the redraws in between too (the previous step kept on screen while the new
one loads, blocks landing one by one). The machine's load average is printed
first: other work on the cores slows the browser down.

Run: ``.venv/bin/python benchmarks/bench_draw.py``.
"""

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

import torch
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import support  # noqa: E402  (the real-tensorboard helpers of the tests)

import tensorboard_rnn_units as rnn_units  # noqa: E402

LAYERS = {"units169": (169, 16.0), "units4096": (4096, 30.0)}  # run: (units, target ms after a step change)
# Records every value data-draw-ms takes, with what the canvas shows then.
RECORDER = """() => {
    const canvas = document.querySelector("[data-testid=unit-grid]");
    window.draws = [];
    new MutationObserver(() => window.draws.push({ms: Number(canvas.dataset.drawMs),
        step: canvas.dataset.step ?? null, busy: canvas.getAttribute("aria-busy")}))
        .observe(canvas, {attributes: true, attributeFilter: ["data-draw-ms"]});
}"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="steps logged per layer (held by a reused --logdir)")
    parser.add_argument("--changes", type=int, default=12, help="step changes measured per layer")
    parser.add_argument("--logdir", help="write here and keep it, or reuse what an earlier run wrote there "
                        "(default: a temporary folder)")
    args = parser.parse_args()
    from playwright import sync_api

    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    logdir = args.logdir or tempfile.mkdtemp(prefix="bench_draw_")
    try:
        if os.path.isdir(os.path.join(logdir, "units4096")):
            print(f"reusing the steps already logged in {logdir}")
        else:
            write(logdir, args.steps)
        with tempfile.TemporaryDirectory(prefix="bench_draw_profile_") as profile, \
                support.tensorboard(logdir, load_fast=True) as base_url, \
                support.chromium(profile, poll_ms=None) as browser:
            page = browser.new_page()
            page.goto(f"{base_url}/#rnn_units")
            frame = page.frame_locator("iframe")
            grid = frame.get_by_test_id("unit-grid")
            sync_api.expect(grid).to_have_attribute("data-step", re.compile("."), timeout=60_000)
            plugin = page.frame(url=re.compile(r"plugin_entry\.html"))
            plugin.evaluate(RECORDER)
            for run, (units, target) in LAYERS.items():
                frame.get_by_test_id("run-select").select_option(run)
                settle(plugin, grid, str(args.steps - 1), units)
                changes = step_changes(plugin, frame, grid, args.steps, args.changes, units)
                report(f"{units} units, step change", [c[-1] for c in changes], target)
                report(f"{units} units, step change, every redraw", [ms for c in changes for ms in c], target)
                if units == 4096:
                    report(f"{units} units, scroll a page", scrolls(plugin, grid, units), target)
                    report(f"{units} units, zoom", zooms(plugin, frame, grid, units), target)
    finally:
        if not args.logdir:
            shutil.rmtree(logdir, ignore_errors=True)


def write(logdir, steps):
    """Logs ``steps`` steps of each layer, a freshly seeded RNN each (MNIST-sized rows, 8 sequences)."""
    generator = torch.Generator().manual_seed(0)
    sequences = torch.rand(8, 28, 28, generator=generator)
    probe = rnn_units.Probe(sequences, window=10, labels=torch.arange(8) % 4)
    for run, (units, _) in LAYERS.items():
        started = time.perf_counter()
        with SummaryWriter(os.path.join(logdir, run)) as writer:
            for step in range(steps):
                torch.manual_seed(step)
                rnn, head = torch.nn.RNN(28, units, batch_first=True), torch.nn.Linear(units, 28)
                rnn_units.add_rnn_units(writer, "rnn/units", rnn, probe, readout=head, rollout=10, global_step=step)
        print(f"{units} units: {steps} steps logged in {time.perf_counter() - started:.1f} s")


def settle(plugin, grid, step, units):
    """Waits until ``step`` of the ``units``-unit layer is drawn with no placeholder on screen."""
    sync_api = sys.modules["playwright.sync_api"]
    sync_api.expect(grid).to_have_attribute("data-units", str(units), timeout=60_000)
    sync_api.expect(grid).to_have_attribute("data-step", step, timeout=60_000)
    sync_api.expect(grid).to_have_attribute("aria-busy", "false", timeout=60_000)
    plugin.wait_for_timeout(200)  # let late redraws (a poll) pass


def drain(plugin):
    """The redraws recorded since the last call, in order."""
    return plugin.evaluate("() => window.draws.splice(0)")


def completed(plugin, grid, predicate):
    """Waits for a redraw satisfying ``predicate(draw)``; returns the durations of all redraws up to it."""
    drawn = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for draw in drain(plugin):
            drawn.append(draw["ms"])
            if predicate(draw):
                plugin.wait_for_timeout(50)
                return drawn
        plugin.wait_for_timeout(20)
    raise TimeoutError("no redraw completed")


def step_changes(plugin, frame, grid, steps, changes, units):
    """Types ``changes`` steps into the step box in turn; per change, every redraw's ms (the last completes it)."""
    box = frame.get_by_test_id("step-input")
    measured = []
    for k in range(changes):
        drain(plugin)
        step = str(k % steps)
        box.fill(step)
        box.press("Enter")
        measured.append(completed(plugin, grid, lambda d: d["step"] == step and d["busy"] == "false"))
    return measured


def scrolls(plugin, grid, units):
    """Scrolls the grid a page at a time to the bottom and back; the redraw of each page once drawn."""
    measured = []
    for direction in (1, -1):
        while True:
            drain(plugin)
            moved = plugin.evaluate("""d => {
                const s = document.querySelector(".grid-scroll");
                const top = s.scrollTop;
                s.scrollTop += d * s.clientHeight;
                return s.scrollTop !== top; }""", direction)
            if not moved:
                break
            measured.append(completed(plugin, grid, lambda d: d["busy"] == "false")[-1])
    print(f"{units} units: {len(measured)} pages scrolled")
    return measured


def zooms(plugin, frame, grid, units):
    """Moves the zoom slider up a notch at a time and back; the redraw of each zoom once drawn."""
    zoom = frame.get_by_role("slider", name="Zoom")
    start = int(zoom.input_value())
    measured = []
    for value in [*range(start + 1, start + 5), *range(start + 3, start - 1, -1)]:
        drain(plugin)
        zoom.fill(str(value))
        measured.append(completed(plugin, grid, lambda d: d["busy"] == "false")[-1])
    return measured


def report(label, values, target):
    median = statistics.median(values)
    print(f"{label}: median {median:.1f} ms, max {max(values):.1f} ms over {len(values)} redraws; "
          f"target {target:.0f} ms; ratio {median / target:.2f}x (max {max(values) / target:.2f}x)")


if __name__ == "__main__":
    main()
