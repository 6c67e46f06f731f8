"""The frontend in a real browser: Debian's Chromium, driven by Playwright,
against the real ``tensorboard`` command serving event files written with
the project's API. The plugin lives in TensorBoard's iframe, reached through
the "RNN Units" tab like a user would.

Screenshots go to ``tests/artifacts/`` (look at them: a test can pass on a
page that looks wrong).
"""

import contextlib
import io
import json
import math
import os
import pathlib
import re
import struct
import urllib.parse

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units
from demo import __main__ as demo_main

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM = support.CHROMIUM
ARTIFACTS = pathlib.Path(__file__).parent / "artifacts"

UNITS = 169                           # a 13 x 13 grid
# 521 logged steps, 5 apart: more than either loader keeps by default. write_run
# repeats 3 sets of features, so step index i looks like index i % 3; the first
# and the last (index 520) differ.
STEPS = list(range(0, 2605, 5))
XSS_RUN = "<img src=x onerror=alert(1)>"
GROWING_RUN = "growing"               # gains steps while a test watches
# Step 0 logged with the relu weighting only, step 1 with top only.
REWEIGHTED_RUN = "reweighted"
STEP_WEIGHTINGS = {0: "relu", 1: "top"}
# More units than fit the page: the grid fetches and paints only the rows on screen.
WIDE_RUN = "wide"
WIDE_UNITS = 2000
# Steps 0-2 of 4 units with windows of 3 inputs, then steps 3-5 of 5 units with
# windows of 4 under the same tag: two layouts.
RESIZED_RUN = "resized"
# Another model measured on train's probe: its units can be matched to train's.
TWIN_RUN = "twin"
TWIN_STEPS = [0, 10]
# The digits demo, long enough for its units to look like something (~2 s; 800 steps
# look the same).
DEMO_RUN = "digits"
DEMO_STEPS = 400
DEMO_ARGS = ("--data", DEMO_RUN, "--steps", str(DEMO_STEPS), "--log-every", "200",
             "--device", "cpu")
# The note's own setting on the shared MNIST test split (~5 s): the README's screenshot.
# 600 steps already draw clear strokes (1,500 take 20 s and look much the same).
MNIST_STEPS = 600
MNIST_ARGS = ("--data", "mnist", "--mnist-dir", support.SHARED_MNIST, "--steps", str(MNIST_STEPS),
              "--log-every", "300", "--probe-size", "500", "--device", "cpu")
HAS_MNIST = os.path.isdir(support.SHARED_MNIST)
# Each run's latest step when the tests start.
LATEST_STEPS = {"train": STEPS[-1], XSS_RUN: 1, GROWING_RUN: 2, REWEIGHTED_RUN: 1, WIDE_RUN: 1,
                RESIZED_RUN: 5, TWIN_RUN: TWIN_STEPS[-1], DEMO_RUN: DEMO_STEPS,
                **({"mnist": MNIST_STEPS} if HAS_MNIST else {})}
TRAIN_LAYOUT = dict(units=UNITS, input_size=6, window=5, length=12, rollout=3)

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (make chromium)"
)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("browser_logdir")
    support.write_run(path, "train", STEPS, **TRAIN_LAYOUT)
    write_twin(path, TWIN_RUN, TWIN_STEPS, **TRAIN_LAYOUT)
    # Selected on load; top is listed second but is the default.
    support.write_run(path, XSS_RUN, [0, 1], units=4, weightings=("relu", "top"))
    support.write_run(path, GROWING_RUN, [0, 1, 2], units=4)
    for step, weighting in STEP_WEIGHTINGS.items():
        support.write_run(path, REWEIGHTED_RUN, [step], units=4, weightings=(weighting,))
    support.write_run(path, WIDE_RUN, [0, 1], units=WIDE_UNITS, input_size=2, window=2, rollout=1)
    support.write_run(path, RESIZED_RUN, [0, 1, 2], units=4, window=3)
    support.write_run(path, RESIZED_RUN, [3, 4, 5], units=5, window=4)
    with contextlib.redirect_stdout(io.StringIO()):
        demo_main.main(["--logdir", str(path), *DEMO_ARGS])
        if HAS_MNIST:
            demo_main.main(["--logdir", str(path), *MNIST_ARGS])
    return path


def write_twin(logdir, run, steps, units, input_size, window, length, rollout, seed=0):
    """``run``: differently seeded RNNs (one a step) measured on the probe ``support.write_run`` builds for ``seed``.

    The probe is rebuilt here as ``write_run`` builds it (a test below checks
    that the fingerprints agree), the models are not: ``write_run``'s runs of
    one seed all log the same models.
    """
    generator = torch.Generator().manual_seed(seed)
    sequences = torch.randn(8, length, input_size, generator=generator)
    labels = (sequences[:, :, 0].mean(dim=1) > 0).long()
    probe = rnn_units.Probe(sequences, window=window, labels=labels, class_names=support.CLASS_NAMES)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1000)
        models = [(torch.nn.RNN(input_size, units, batch_first=True), torch.nn.Linear(units, input_size))
                  for _ in steps]
    with SummaryWriter(os.path.join(logdir, run)) as writer:
        for step, (rnn, readout) in zip(steps, models):
            rnn_units.add_rnn_units(writer, support.TAG, rnn, probe, readout=readout, rollout=rollout,
                                    global_step=step)


@pytest.fixture(scope="module")
def base_url(logdir):
    with support.tensorboard(logdir, load_fast=True) as url:
        for run, step in LATEST_STEPS.items():
            wait_for_steps(url, run, step)
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with support.chromium(tmp_path_factory.mktemp("chromium_profile")) as context:
        yield context


class Tab:
    """The TensorBoard page with the plugin's tab open, and what it reported."""

    def __init__(self, page):
        self.page = page
        self.frame = page.frame_locator("iframe")
        self.dialogs = []   # JavaScript alert/confirm/prompt messages: none expected
        self.errors = []    # uncaught exceptions in any frame
        self.requests = []  # URLs of the plugin's routes the page fetched
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url) if "/plugin/rnn_units/" in r.url else None)

    def feature_requests(self, run):
        """The query of each /features request for `run`, as a dict, in order."""
        queries = []
        for url in self.requests:
            parsed = urllib.parse.urlparse(url)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            if parsed.path.endswith("/features") and query.get("run") == run:
                queries.append(query)
        return queries

    @property
    def plugin_frame(self):
        """The plugin's iframe, to run JavaScript in (e.g. import its modules)."""
        return self.page.frame(url=re.compile(r"plugin_entry\.html"))

    def get(self, testid):
        return self.frame.get_by_test_id(testid)

    @property
    def grid(self):
        return self.get("unit-grid")

    def show_run(self, run):
        """Selects `run` and waits until its latest step is drawn."""
        self.get("run-select").select_option(run)
        expect(self.grid).to_have_attribute("data-step", str(self.latest_step(run)), timeout=30_000)

    def latest_step(self, run):
        return LATEST_STEPS[run]

    def pixels(self):
        """The grid canvas as a PNG data URL."""
        return self.grid.evaluate("canvas => canvas.toDataURL()")

    def colours(self, testid):
        """How many distinct colours the canvas `testid` has drawn (0: nothing yet)."""
        return self.get(testid).evaluate("""canvas => {
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            const seen = new Set();
            for (let p = 0; p < data.length; p += 4) if (data[p + 3]) seen.add(data.slice(p, p + 4).join());
            return seen.size;
        }""")

    def wait_drawn(self, testid, colours=2):
        """Waits until the canvas `testid` shows at least `colours` colours."""
        support.wait_for(lambda: self.colours(testid) >= colours, 30, what=f"{testid} drawn")

    def screenshot(self, name):
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / name))


@contextlib.contextmanager
def open_tab(browser_context, base_url, setup=None):
    """A new page on TensorBoard's RNN Units tab, once it has drawn the first run.

    ``setup(page)``, if given, runs before the page loads (e.g. to route requests).
    """
    page = browser_context.new_page()
    tab = Tab(page)  # listening before the page loads
    if setup:
        setup(page)
    page.goto(f"{base_url}/#rnn_units")
    expect(page.get_by_text("RNN Units").first).to_be_visible()
    expect(tab.grid).to_have_attribute("data-step", str(tab.latest_step(XSS_RUN)), timeout=30_000)
    yield tab
    page.close()
    assert tab.errors == []
    assert tab.dialogs == []


@pytest.fixture
def tab(browser_context, base_url):
    with open_tab(browser_context, base_url) as tab:
        yield tab


def tags(base_url):
    """The plugin's /tags answer."""
    status, body = support.get(f"{base_url}/data/plugin/rnn_units/tags")
    assert status == 200, body
    return json.loads(body)


def wait_for_steps(base_url, run, last_step):
    """Waits until TensorBoard serves `run` up to `last_step`."""

    def loaded():
        query = urllib.parse.urlencode({"run": run, "tag": support.TAG})  # the demo's tag too
        status, body = support.get(f"{base_url}/data/plugin/rnn_units/steps?{query}")
        steps = json.loads(body) if status == 200 else []
        return steps and steps[-1]["step"] == last_step

    support.wait_for(loaded, 60, what=f"step {last_step} of run {run!r}")


def test_tab_shows_a_cell_per_unit(tab):
    runs = tab.get("run-select").locator("option").all_text_contents()
    assert runs == sorted(LATEST_STEPS)
    tab.show_run("train")
    expect(tab.grid).to_have_attribute("data-units", str(UNITS))
    expect(tab.grid).to_have_attribute("data-display", "image_rows")  # the painter in use
    # All 169 units in one block of units, fetched once.
    assert tab.feature_requests("train") == [
        {"run": "train", "tag": support.TAG, "step": str(STEPS[-1]), "units": "0:256"}]
    expect(tab.get("tag-select")).to_have_value(support.TAG)
    expect(tab.get("weighting-select")).to_have_value("top")  # the default when logged
    box = tab.grid.bounding_box()
    assert 0.5 < box["width"] / box["height"] < 2, box  # 13 x 13, near-square
    tab.screenshot("grid.png")


def test_demo_grid(tab):
    tab.page.set_viewport_size({"width": 1200, "height": 1160})  # the grid fits it at 8 px/value
    tab.show_run(DEMO_RUN)
    expect(tab.grid).to_have_attribute("data-units", "169")  # the demo's --hidden default
    tab.screenshot("demo-grid.png")


@support.needs_shared_mnist
def test_mnist_demo_grid(tab):
    """The README's screenshot (docs/screenshot-grid.png is a copy): 13 x 13 MNIST units."""
    tab.page.set_viewport_size({"width": 1200, "height": 1160})  # 3 px/value: 84 px cells
    tab.show_run("mnist")
    expect(tab.grid).to_have_attribute("data-units", "169")
    expect(tab.grid).to_have_attribute("data-step", str(MNIST_STEPS))
    box = tab.grid.bounding_box()
    assert 0.5 < box["width"] / box["height"] < 2, box
    tab.screenshot("mnist-grid.png")


def test_slider_buttons_and_arrow_keys_change_the_step_and_pixels(tab):
    tab.show_run("train")
    latest = tab.pixels()
    slider = tab.get("step-slider")
    slider.press("Home")  # the native range input moves to its first value
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[0]))
    expect(tab.get("step-input")).to_have_value(str(STEPS[0]))
    first = tab.pixels()
    assert first != latest

    slider.press("ArrowRight")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[1]))
    assert tab.pixels() != first

    tab.frame.get_by_role("button", name="Next step").click()
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[2]))
    tab.frame.get_by_role("button", name="Previous step").click()
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[1]))

    tab.frame.locator("main").click(position={"x": 5, "y": 5})  # focus off the form fields
    tab.page.keyboard.press("ArrowRight")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[2]))
    tab.page.keyboard.press("ArrowLeft")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[1]))


def test_typing_a_step_jumps_to_it_or_the_nearest_logged_one(tab):
    tab.show_run("train")
    step_input = tab.get("step-input")
    step_input.fill(str(STEPS[7]))
    step_input.press("Enter")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[7]))
    expect(tab.get("step-slider")).to_have_value("7")

    step_input.fill(str(STEPS[3] + 2))  # not logged: 2 from STEPS[3], 3 from STEPS[4]
    step_input.press("Enter")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[3]))
    expect(tab.frame.get_by_role("status").filter(has_text="nearest")).to_contain_text(
        str(STEPS[3]))


def test_play_advances_through_the_steps(tab):
    tab.show_run("train")
    tab.get("step-slider").press("Home")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[0]))
    tab.frame.get_by_role("button", name="Play").click()
    expect(tab.grid).not_to_have_attribute("data-step", str(STEPS[0]))
    tab.frame.get_by_role("button", name="Pause").click()
    expect(tab.frame.get_by_role("button", name="Play")).to_be_visible()


def test_clicking_a_cell_opens_the_unit_detail(tab, base_url):
    tab.show_run("train")
    box = tab.grid.bounding_box()
    cell = box["width"] / 13
    tab.grid.click(position={"x": 1.5 * cell, "y": 0.5 * cell})  # row 0, column 1

    detail = tab.get("unit-detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_role("heading", name="Unit 1")).to_be_visible()
    expect(detail).to_contain_text("Active fraction")
    expect(detail).to_contain_text("Effective sample size")
    # The probe's fingerprint, so two runs measured on different data can be told apart.
    fingerprint = tags(base_url)["train"][support.TAG]["probe_fingerprint"]
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)
    expect(detail.locator("dd.probe")).to_have_text(fingerprint)
    for name in support.CLASS_NAMES:
        expect(detail.locator(".bar-label", has_text=name)).to_be_visible()
    expect(detail.locator(".column")).to_have_count(12 - 5 + 1)  # one per window end position
    # End positions count the inputs consumed: L = 5 (the first full window) to T = 12.
    axis = detail.locator(".column-chart .axis > span")
    expect(axis).to_have_text(["5", "end position", "12"])
    filmstrip = detail.locator("canvas.filmstrip")
    expect(filmstrip).to_be_visible(timeout=60_000)
    expect(detail).to_contain_text(f"{len(STEPS)} logged steps")
    tab.screenshot("detail.png")

    # A filmstrip frame shows its step in the grid; the detail follows.
    filmstrip.click(position={"x": 8, "y": 8})
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[0]))
    expect(detail).to_contain_text(f"step {STEPS[0]}")

    tab.page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def test_weighting_difference_and_shared_scale_change_the_pixels(tab):
    tab.show_run("train")
    seen = [tab.pixels()]
    tab.get("weighting-select").select_option("relu")
    seen.append(tab.pixels())
    tab.frame.get_by_label("Difference from mean").check()
    seen.append(tab.pixels())
    tab.frame.get_by_label("Shared scale").check()
    seen.append(tab.pixels())
    assert len(set(seen)) == len(seen), "a display option left the grid unchanged"
    expect(tab.frame.locator(".legend")).to_contain_text("difference from the probe mean")
    tab.screenshot("grid-difference.png")

    width = tab.grid.bounding_box()["width"]
    zoom = tab.frame.get_by_label("Zoom")
    zoom.press("End")
    assert tab.grid.bounding_box()["width"] > width


def test_top_is_the_default_weighting_when_logged_and_dead_says_what_it_means(tab):
    expect(tab.get("run-select")).to_have_value(XSS_RUN)  # selected on load
    weighting = tab.get("weighting-select")
    expect(weighting.locator("option")).to_have_text(["relu", "top"])  # as logged
    expect(weighting).to_have_value("top")
    defaults, dead = tab.plugin_frame.evaluate("""async () => {
        const {deadMeaning, defaultWeighting} = await import("./static/model.js");
        return [[["relu", "top"], ["top", "relu"], ["relu"]].map(defaultWeighting),
                ["relu", "top"].map(deadMeaning)];
    }""")
    assert defaults == ["top", "top", "relu"]
    assert dead == ["never active on the probe (signal ≤ 0 on every window)",
                    "no window above its top-fraction threshold"]


def test_a_step_without_the_selected_weighting_shows_one_it_has(tab):
    tab.show_run(REWEIGHTED_RUN)
    # The tag's description (so the selection) is the first event's that the loader
    # read; whichever it is, one of the two steps lacks the selected weighting.
    selected = tab.get("weighting-select").input_value()
    assert selected in STEP_WEIGHTINGS.values()
    note = tab.frame.locator(".grid-note")
    detail = tab.get("unit-detail")
    for key, (step, logged) in zip(["End", "Home"], sorted(STEP_WEIGHTINGS.items(), reverse=True)):
        tab.get("step-slider").press(key)
        expect(tab.grid).to_have_attribute("data-step", str(step))  # drawn, not left stale
        if logged == selected:
            expect(note).to_be_hidden()
        else:
            expect(note).to_have_text(
                f"Step {step} was logged without the {selected} weighting; showing {logged}.")
            tab.screenshot("grid-other-weighting.png")
        tab.grid.click(position={"x": 5, "y": 5})  # unit 0
        expect(detail).to_contain_text(f"{logged} weighting · step {step}")
        # The filmstrip has the latest layout's steps (top only) whatever the step shown.
        expect(detail.locator("canvas.filmstrip")).to_be_visible(timeout=30_000)
        expect(detail).to_contain_text("1 logged steps")
        if logged != selected:
            tab.screenshot("detail-other-weighting.png")
        tab.page.keyboard.press("Escape")
        expect(detail).to_be_hidden()


def test_run_names_are_shown_as_text_never_as_html(tab):
    run_select = tab.get("run-select")
    expect(run_select).to_have_value(XSS_RUN)  # sorts first, so it is selected on load
    expect(run_select.locator("option", has_text=XSS_RUN)).to_have_count(1)
    tab.grid.click(position={"x": 10, "y": 10})
    expect(tab.get("unit-detail")).to_contain_text(XSS_RUN)
    assert tab.frame.locator("img").count() == 0
    assert tab.dialogs == []


def test_new_steps_appear_without_a_page_refresh(tab, logdir):
    tab.show_run(GROWING_RUN)
    expect(tab.get("step-slider")).to_have_attribute("max", "2")
    support.write_run(logdir, GROWING_RUN, [3, 4, 5], units=4)
    # The user was on the latest step, so the view follows the new latest one.
    expect(tab.grid).to_have_attribute("data-step", "5", timeout=60_000)
    expect(tab.get("step-slider")).to_have_attribute("max", "5")


def test_frontend_decodes_the_wire_format_like_numpy(tab, base_url):
    """model.js (float16 through a lookup table, 8-aligned views, axes) on real /features answers."""
    for units in [None, (100, 140)]:
        query = {"run": "train", "tag": support.TAG, "step": STEPS[-1]}
        if units:
            query["units"] = "%d:%d" % units
        status, body = support.get(
            f"{base_url}/data/plugin/rnn_units/features?{urllib.parse.urlencode(query)}")
        assert status == 200
        header, expected = support.unpack_wire(body)
        specs = wire_specs(body)
        decoded = tab.plugin_frame.evaluate("""async ({run, tag, step, units}) => {
            const model = await import("./static/model.js");
            const {header, arrays, ignored} = await model.fetchFeatures(run, tag, step, units);
            const plain = ([name, a]) => [name, {shape: a.shape, axes: a.axes, data: Array.from(a.data)}];
            return {header, ignored, arrays: Object.fromEntries(Object.entries(arrays).map(plain))};
        }""", dict(query, units=units and list(units)))
        assert decoded["header"]["step"] == STEPS[-1]
        assert decoded["header"]["unit_range"] == header["unit_range"] == list(units or (0, UNITS))
        assert decoded["ignored"] == []
        assert sorted(decoded["arrays"]) == sorted(expected)
        for name, array in expected.items():
            assert decoded["arrays"][name]["shape"] == list(array.shape), name
            assert decoded["arrays"][name]["axes"] == specs[name]["axes"], name
            np.testing.assert_array_equal(
                np.array(decoded["arrays"][name]["data"]), array.astype(np.float64).ravel(), name)


def test_frontend_ignores_arrays_it_does_not_know(tab):
    """A newer backend's array of an unknown dtype is skipped, the others still decode."""
    known = np.arange(3, dtype="<f4").tobytes()
    header = {"step": 7, "arrays": [
        {"name": "future/sample", "dtype": "int64", "shape": [1], "axes": ["unit"], "offset": 0,
         "nbytes": 8},
        {"name": "signal_max", "dtype": "float32", "shape": [3], "axes": ["unit"], "offset": 0,
         "nbytes": len(known)},
    ]}
    # Header length, header, padding to 8, then int64 at offset a, float32 at a + 8.
    for _ in range(3):  # the offsets' digits change the header's length
        encoded = json.dumps(header).encode()
        start = -(-(4 + len(encoded)) // 8) * 8
        header["arrays"][0]["offset"], header["arrays"][1]["offset"] = start, start + 8
    encoded = json.dumps(header).encode()
    assert -(-(4 + len(encoded)) // 8) * 8 == start
    buffer = struct.pack("<I", len(encoded)) + encoded
    buffer += bytes(start - len(buffer)) + (12345).to_bytes(8, "little") + known
    decoded = tab.plugin_frame.evaluate("""async (bytes) => {
        const model = await import("./static/model.js");
        const {header, arrays, ignored} = model.decodeWire(new Uint8Array(bytes).buffer);
        return {step: header.step, ignored, names: Object.keys(arrays),
                signalMax: Array.from(arrays.signal_max.data), axes: arrays.signal_max.axes};
    }""", list(buffer))
    assert decoded == {"step": 7, "ignored": ["future/sample"], "names": ["signal_max"],
                       "signalMax": [0, 1, 2], "axes": ["unit"]}


def wire_specs(body):
    """``{name: spec}`` of a wire answer's header (``support.unpack_wire`` drops the axes)."""
    (n,) = struct.unpack_from("<I", body)
    return {spec["name"]: spec for spec in json.loads(body[4 : 4 + n])["arrays"]}


def test_a_layer_too_big_for_the_page_loads_the_units_on_screen(tab):
    tab.show_run(WIDE_RUN)
    grid = tab.grid
    expect(grid).to_have_attribute("data-units", str(WIDE_UNITS))
    scroller = tab.frame.locator(".grid-scroll")
    assert scroller.evaluate("s => s.scrollHeight > s.clientHeight + 100"), "the grid should scroll"

    # The first draw fetched blocks of units, not the whole layer (blocks of 256: the last is 1792:2048).
    first = tab.feature_requests(WIDE_RUN)
    assert first and all("units" in q for q in first), first
    assert {q["units"] for q in first} <= {"%d:%d" % (b, b + 256) for b in range(0, 1792, 256)}, first

    # Cells are near-square: 45 x 45 for 2,000 units; the last unit is in row 44, column 19.
    cols = math.ceil(math.sqrt(WIDE_UNITS))
    box = grid.bounding_box()
    pitch_x, pitch_y = (box["width"] - 4) / cols, (box["height"] - 4) / cols
    last = {"x": 4 + (WIDE_UNITS - 1 - 44 * cols + 0.5) * pitch_x - 2, "y": 4 + 44.5 * pitch_y - 2}
    pixel = """([{x, y}, painted]) => {
        const canvas = document.querySelector("[data-testid=unit-grid]");
        const dpr = window.devicePixelRatio || 1;
        const [r, g, b, a] = canvas.getContext("2d").getImageData(x * dpr, y * dpr, 1, 1).data;
        const placeholder = r === 245 && g === 245 && b === 245;
        return painted ? a === 255 && !placeholder : a === 0;
    }"""
    assert tab.plugin_frame.evaluate(pixel, [last, False]), "a cell off screen was painted"

    scroller.evaluate("s => { s.scrollTop = s.scrollHeight; }")
    tab.plugin_frame.wait_for_function(pixel, arg=[last, True])  # drawn with its data
    expect(grid).to_have_attribute("aria-busy", "false")  # no placeholder left on screen
    expect(grid).to_have_attribute("data-step", str(LATEST_STEPS[WIDE_RUN]))
    assert "1792:2048" in {q["units"] for q in tab.feature_requests(WIDE_RUN)}
    assert all("units" in q for q in tab.feature_requests(WIDE_RUN))
    tab.screenshot("grid-wide.png")

    grid.click(position=last)
    detail = tab.get("unit-detail")
    expect(detail.get_by_role("heading", name=f"Unit {WIDE_UNITS - 1}")).to_be_visible()
    expect(detail).to_contain_text("Active fraction")
    expect(detail.locator("canvas.filmstrip")).to_be_visible(timeout=30_000)


def test_steps_of_another_layout_are_drawn_and_named_in_the_filmstrip(tab):
    tab.show_run(RESIZED_RUN)
    expect(tab.grid).to_have_attribute("data-units", "5")
    tab.get("step-slider").press("Home")
    expect(tab.grid).to_have_attribute("data-step", "0")
    expect(tab.grid).to_have_attribute("data-units", "4")  # that step's own layout
    tab.grid.click(position={"x": 5, "y": 5})  # unit 0
    detail = tab.get("unit-detail")
    expect(detail).to_contain_text("step 0")
    expect(detail.locator("canvas.filmstrip")).to_be_visible(timeout=30_000)
    # The filmstrip stacks the latest layout's steps 3-5; steps 0-2 are counted, not shown.
    expect(detail).to_contain_text("3 logged steps")
    expect(detail).to_contain_text("3 steps were logged with another layout")


def test_a_display_this_frontend_cannot_draw_is_named_not_drawn(browser_context, base_url):
    def unknown_display(route):
        answer = route.fetch()
        described = answer.json()
        described[GROWING_RUN][support.TAG]["display"] = "sparkles"
        route.fulfill(response=answer, json=described)

    def setup(page):
        page.route(re.compile(r"/data/plugin/rnn_units/tags$"), unknown_display)

    with open_tab(browser_context, base_url, setup) as tab:
        tab.get("run-select").select_option(GROWING_RUN)
        notice = tab.frame.get_by_role("status").filter(has_text="sparkles")
        expect(notice).to_contain_text("cannot be drawn")
        expect(tab.grid).to_be_hidden()
        expect(tab.grid).not_to_have_attribute("data-display", re.compile(".*"))
        assert tab.feature_requests(GROWING_RUN) == []
        tab.get("run-select").select_option(XSS_RUN)  # the others still draw
        expect(tab.grid).to_have_attribute("data-step", str(LATEST_STEPS[XSS_RUN]))
        expect(tab.grid).to_be_visible()


def route_json(base_url, route, query):
    """The plugin's JSON answer of ``route`` for ``query``."""
    status, body = support.get(
        f"{base_url}/data/plugin/rnn_units/{route}?{urllib.parse.urlencode(query)}")
    assert status == 200, body
    return json.loads(body)


def test_compare_mode_draws_a_and_b_their_difference_and_the_panel(tab):
    tab.show_run("train")
    grid = tab.grid
    step_a, step_b = tab.get("step-a-input"), tab.get("step-b-input")
    expect(step_a).to_be_hidden()
    tab.get("compare-toggle").check()
    # A: the first logged step, B: the step shown; the step control gives way to A and B.
    expect(step_a).to_have_value(str(STEPS[0]))
    expect(step_b).to_have_value(str(STEPS[-1]))
    expect(tab.get("compare-run-select")).to_have_value("train")
    expect(tab.get("step-slider")).to_be_hidden()
    expect(grid).to_have_attribute("data-step-a", str(STEPS[0]))
    expect(grid).to_have_attribute("data-step-b", str(STEPS[-1]))
    expect(grid).to_have_attribute("data-compare", "pair")
    seen = [tab.pixels()]

    # Step index i looks like index i % 3: A at index 1 differs from index 0, B at 2 from 520 (= 1).
    step_a.fill(str(STEPS[1]))
    step_a.press("Enter")
    expect(grid).to_have_attribute("data-step-a", str(STEPS[1]))
    seen.append(tab.pixels())
    step_b.fill(str(STEPS[2] + 2))  # not logged: the nearest is shown, with a note
    step_b.press("Enter")
    expect(grid).to_have_attribute("data-step-b", str(STEPS[2]))
    expect(tab.frame.get_by_role("status").filter(has_text="nearest")).to_contain_text(str(STEPS[2]))
    seen.append(tab.pixels())
    tab.get("compare-diff").check()
    expect(grid).to_have_attribute("data-compare", "diff")
    expect(tab.frame.locator(".legend")).to_contain_text("B − A")
    seen.append(tab.pixels())
    assert len(set(seen)) == len(seen), "a compare setting left the grid unchanged"
    summary = tab.get("compare-summary")
    expect(summary).to_contain_text("activation sample")
    expect(summary).to_contain_text(re.compile(r"median \d"))

    # The panel: drift (units x steps), layer similarity (steps x steps), units per class.
    tab.wait_drawn("drift-heatmap")
    tab.wait_drawn("similarity-heatmap")
    coverage = tab.get("class-coverage")
    for name in support.CLASS_NAMES:
        expect(coverage.locator(".bar-label", has_text=name)).to_be_visible()
    tab.get("similarity-heatmap").hover(position={"x": 4, "y": 4})
    expect(tab.frame.locator(".heatmap-readout", has_text="CKA")).to_have_text(
        re.compile(r"step \d+ vs step \d+: CKA [01](\.\d+)?"))
    tab.screenshot("compare-diff.png")

    # Each unit's change, on hover and in its detail (with when it settled).
    grid.hover(position={"x": 6, "y": 6})
    expect(tab.frame.locator(".readout")).to_contain_text("unit 0 · change a → b:")
    grid.click(position={"x": 6, "y": 6})
    detail = tab.get("unit-detail")
    expect(detail).to_have_attribute("data-unit", "0")
    expect(detail).to_contain_text("Change A → B")
    expect(detail).to_contain_text("on the activation sample")
    expect(detail).to_contain_text("Settled")
    expect(detail).to_contain_text(f"step {STEPS[1]} (A) compared with step {STEPS[2]} (B)")
    tab.page.keyboard.press("Escape")

    # Older logs have no activation sample: the summary says what change is measured on.
    def without_sample(route):
        answer = route.fetch()
        route.fulfill(response=answer, json=dict(answer.json(), activation=None, missing=["activation_sample"]))

    tab.page.route(re.compile(r"/data/plugin/rnn_units/change\?"), without_sample)
    step_a.fill(str(STEPS[4]))
    step_a.press("Enter")
    expect(summary).to_contain_text("no activation sample")

    # Off again: the step control and the step shown before.
    tab.get("compare-toggle").uncheck()
    expect(step_a).to_be_hidden()
    expect(tab.get("step-slider")).to_be_visible()
    expect(grid).to_have_attribute("data-step", str(STEPS[-1]))
    expect(grid).not_to_have_attribute("data-compare", re.compile(".*"))


def test_sort_orders_the_grid_and_cells_open_their_unit(tab, base_url):
    tab.show_run("train")
    grid, sort = tab.grid, tab.get("sort-select")
    orders = sort.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert len(orders) >= 6 and orders[0] == "index", orders
    expect(sort.locator("option[value=change]")).to_be_disabled()  # needs compare mode
    expect(grid).to_have_attribute("data-order", "index")
    by_index = tab.pixels()

    sort.select_option("activity")
    expect(grid).to_have_attribute("data-order", "activity")
    assert tab.pixels() != by_index
    query = {"run": "train", "tag": support.TAG, "step": STEPS[-1]}
    status, body = support.get(f"{base_url}/data/plugin/rnn_units/features?{urllib.parse.urlencode(query)}")
    assert status == 200
    most_active = int(np.argmax(support.unpack_wire(body)[1]["signal_mean"]))
    assert most_active != 0
    detail = tab.get("unit-detail")
    for _ in range(2):  # at the step it was sorted at, then at another: the order stays put
        grid.click(position={"x": 6, "y": 6})  # the first cell
        expect(detail).to_have_attribute("data-unit", str(most_active))
        expect(detail.get_by_role("heading", name=f"Unit {most_active}")).to_be_visible()
        tab.page.keyboard.press("Escape")
        tab.get("step-slider").press("Home")
        expect(grid).to_have_attribute("data-step", str(STEPS[0]))
        expect(grid).to_have_attribute("data-order", "activity")

    sort.select_option("similarity")  # computed at the step shown now
    expect(grid).to_have_attribute("data-order", "similarity")
    first = route_json(base_url, "order", dict(query, step=STEPS[0]))["similarity"][0]
    grid.click(position={"x": 6, "y": 6})
    expect(detail).to_have_attribute("data-unit", str(first))
    tab.page.keyboard.press("Escape")

    tab.get("compare-toggle").check()
    sort.select_option("change")
    expect(grid).to_have_attribute("data-order", "change")
    tab.screenshot("compare-sorted.png")

    # Units without a value (NaN: dead, unmatched) sort last; ties keep the index order.
    order, positions, other_layer = tab.plugin_frame.evaluate("""async () => {
        const {orderMaps, sortUnits} = await import("./static/order.js");
        const keys = [3, NaN, 1, 3, 2];
        const order = sortUnits(5, (u) => keys[u]);
        return [Array.from(order), [0, 1, 2, 3, 4].map(orderMaps(order, 5).positionOf),
                orderMaps(order, 6).valid];
    }""")
    assert order == [2, 4, 0, 3, 1]
    assert positions == [2, 4, 0, 3, 1]
    assert other_layer is False  # an order of 5 units is not applied to 6


def test_compare_with_a_run_on_the_same_probe_matches_its_units(tab, base_url):
    fingerprints = {run: tags(base_url)[run][support.TAG]["probe_fingerprint"] for run in ("train", TWIN_RUN)}
    assert fingerprints["train"] == fingerprints[TWIN_RUN], "write_twin no longer builds write_run's probe"
    tab.show_run("train")
    tab.get("compare-toggle").check()
    run_select = tab.get("compare-run-select")
    options = run_select.locator("option").all_text_contents()
    assert options[0] == "this run" and TWIN_RUN in options and f"{DEMO_RUN} (other probe)" in options, options

    run_select.select_option(TWIN_RUN)
    grid = tab.grid
    expect(grid).to_have_attribute("data-compare-run", TWIN_RUN)
    expect(tab.get("step-b-input")).to_have_value(str(TWIN_STEPS[-1]))  # B: the other run's latest step
    summary = tab.get("compare-summary")
    expect(summary).to_contain_text(re.compile(r"CKA [01](\.\d+)?\b"))
    match = route_json(base_url, "match", {"run": "train", "tag": support.TAG, "step": STEPS[0],
                                           "other_run": TWIN_RUN, "other_step": TWIN_STEPS[-1]})
    poor = sum(1 for v in match["similarity"] if v is None or v < match["threshold"])
    expect(summary).to_contain_text(f"{poor} of {UNITS} without a good match")
    if poor:
        expect(tab.frame.locator(".legend-poor")).to_be_visible()
    pairs = tab.pixels()

    # Cell 0: train's unit 0 beside its match in the twin.
    grid.hover(position={"x": 6, "y": 6})
    expect(tab.frame.locator(".readout")).to_contain_text(f"matched unit of b: {match['assignment'][0]}, correlation")
    grid.click(position={"x": 6, "y": 6})
    detail = tab.get("unit-detail")
    expect(detail).to_contain_text(f"run {TWIN_RUN}, unit {match['assignment'][0]}")
    tab.page.keyboard.press("Escape")

    step_b = tab.get("step-b-input")  # B's steps are the other run's
    step_b.fill("3")
    step_b.press("Enter")
    expect(grid).to_have_attribute("data-step-b", "0")
    assert tab.pixels() != pairs

    # A run logged on another probe cannot be compared, and the page says why.
    run_select.select_option(DEMO_RUN)
    expect(tab.frame.locator(".compare-bar").get_by_role("status").filter(has_text="another probe")).to_contain_text(
        "cannot be compared")
    expect(run_select).to_have_value(TWIN_RUN)
    expect(grid).to_have_attribute("data-compare-run", TWIN_RUN)
    tab.screenshot("compare-runs.png")


def test_compare_screenshot(tab):
    """The README's compare screenshot: the MNIST demo (else digits) at its first and last step."""
    run = "mnist" if HAS_MNIST else DEMO_RUN
    tab.page.set_viewport_size({"width": 1640, "height": 1150})  # 13 pairs of 2 x 28 values at 2 px/value
    tab.show_run(run)
    tab.get("compare-toggle").check()
    expect(tab.grid).to_have_attribute("data-step-a", "0")
    expect(tab.grid).to_have_attribute("data-step-b", str(LATEST_STEPS[run]))
    expect(tab.grid).to_have_attribute("aria-busy", "false")
    tab.wait_drawn("similarity-heatmap")
    tab.wait_drawn("drift-heatmap")
    expect(tab.get("class-coverage").locator(".bar-label")).to_have_count(10)
    tab.screenshot("compare.png")


def test_python_loader_serves_the_same_tab(browser_context, logdir):
    with support.tensorboard(logdir, load_fast=False) as url:
        wait_for_steps(url, "train", STEPS[-1])
        with open_tab(browser_context, url) as tab:
            tab.show_run("train")
            expect(tab.grid).to_have_attribute("data-units", str(UNITS))
            expect(tab.get("step-slider")).to_have_attribute("max", str(len(STEPS) - 1))
            tab.get("step-slider").press("Home")
            expect(tab.grid).to_have_attribute("data-step", str(STEPS[0]))


def test_empty_logdir_says_how_to_log_data(browser_context, tmp_path):
    with support.tensorboard(tmp_path, load_fast=True) as url:
        page = browser_context.new_page()
        page.goto(f"{url}/data/plugin_entry.html?name=rnn_units")
        notice = page.get_by_role("status").filter(has_text="No RNN unit data was found")
        expect(notice).to_contain_text("add_rnn_units")
        page.close()


def test_a_logdir_of_a_newer_version_says_to_upgrade(browser_context, tmp_path):
    """Data this package cannot read is named with the reason, not shown as "no data"."""
    features = support.write_run(tmp_path / "scratch", "r", [0], units=3)[0]
    summary = rnn_units.rnn_units_pb(support.TAG, features)
    value = summary.value[0]
    content = json.loads(value.metadata.plugin_data.content)
    value.metadata.plugin_data.content = json.dumps(dict(content, version=99)).encode()
    with SummaryWriter(tmp_path / "logs" / "future") as writer:
        writer._get_file_writer().add_summary(summary, 0)
    with support.tensorboard(tmp_path / "logs", load_fast=True) as url:
        page = browser_context.new_page()
        page.goto(f"{url}/data/plugin_entry.html?name=rnn_units")
        notice = page.get_by_role("status").filter(has_text="newer tensorboard-rnn-units")
        expect(notice).to_contain_text("upgrade the package")
        expect(notice).to_contain_text("future / rnn/units: plugin content: format version 99 is newer")
        page.close()


# A run whose step 1 cannot be read (a data blob cut short) between two good steps,
# and a run written by a newer version, beside it.
BROKEN_RUN = "broken"
FUTURE_RUN = "future"


@pytest.fixture(scope="module")
def partial_url(tmp_path_factory):
    """A small TensorBoard of BROKEN_RUN (steps 0-2, step 1 unreadable) and FUTURE_RUN (format 99)."""
    path = tmp_path_factory.mktemp("partial_logdir")
    features = support.write_run(path / "scratch", "r", [0, 1, 2], units=3)
    with SummaryWriter(path / "logs" / BROKEN_RUN) as writer:
        for step in [0, 1, 2]:
            summary = rnn_units.rnn_units_pb(support.TAG, features[step])
            if step == 1:
                summary.value[0].tensor.string_val[1] = b"short"  # the shared arrays, cut short
            writer._get_file_writer().add_summary(summary, step)
    summary = rnn_units.rnn_units_pb(support.TAG, features[0])
    value = summary.value[0]
    content = json.loads(value.metadata.plugin_data.content)
    value.metadata.plugin_data.content = json.dumps(dict(content, version=99)).encode()
    with SummaryWriter(path / "logs" / FUTURE_RUN) as writer:
        writer._get_file_writer().add_summary(summary, 0)
    with support.tensorboard(path / "logs", load_fast=True) as url:
        wait_for_steps(url, BROKEN_RUN, 2)
        yield url


@contextlib.contextmanager
def plugin_page(browser_context, url):
    """The plugin's page alone (no TensorBoard around it); asserts no uncaught errors or dialogs."""
    page = browser_context.new_page()
    errors, dialogs = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/data/plugin_entry.html?name=rnn_units")
    yield page
    page.close()
    assert errors == [] and dialogs == []


def test_an_unreadable_step_is_named_greyed_retried_with_backoff_and_counted_in_the_detail(
        browser_context, partial_url):
    def step_one_requests():
        queries = [(urllib.parse.urlparse(u).path, dict(urllib.parse.parse_qsl(urllib.parse.urlparse(u).query)))
                   for u in requests]
        return [q for path, q in queries if path.endswith("/features") and q.get("step") == "1"]

    with plugin_page(browser_context, partial_url) as page:
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        grid, caption = page.get_by_test_id("unit-grid"), page.get_by_test_id("grid-caption")
        expect(grid).to_have_attribute("data-step", "2", timeout=30_000)
        expect(caption).to_have_text(f"{BROKEN_RUN} · {support.TAG} · step 2")
        expect(grid).not_to_have_attribute("data-failed", re.compile(".*"))

        page.get_by_role("button", name="Previous step").click()
        notice = page.get_by_role("status").filter(has_text="Could not load step 1.")
        expect(notice).to_be_visible()
        # The old drawing is not left as if it were step 1: placeholders, greyed.
        expect(grid).to_have_attribute("data-failed", "true")
        expect(grid).to_have_class(re.compile(r"\bfailed\b"))
        expect(grid).not_to_have_attribute("data-step", re.compile(".*"))
        expect(caption).to_contain_text(f"{BROKEN_RUN} · {support.TAG} · step 1")
        expect(caption).to_contain_text("could not be loaded")
        page.screenshot(path=str(ARTIFACTS / "grid-unreadable-step.png"))

        # Polled every second: retried after 1 poll, then 2 (then 4), not each poll; the error
        # stays on screen meanwhile.
        for _ in range(30):
            page.wait_for_timeout(150)
            assert notice.is_visible(), "the error went away before the step loaded"
        assert 2 <= len(step_one_requests()) <= 3, step_one_requests()

        # A manual change of step tries again at once.
        page.get_by_role("button", name="Next step").click()
        expect(grid).to_have_attribute("data-step", "2")
        expect(grid).not_to_have_attribute("data-failed", re.compile(".*"))
        expect(notice).to_be_hidden()
        before = len(step_one_requests())
        page.get_by_role("button", name="Previous step").click()
        page.wait_for_timeout(300)  # less than a poll; Playwright reports requests while it waits
        assert len(step_one_requests()) > before, "step 1 was not fetched again at once"
        expect(notice).to_be_visible()

        # The filmstrip of a unit says a step is missing from it, and why.
        page.get_by_role("button", name="Next step").click()
        expect(grid).to_have_attribute("data-step", "2")
        grid.click(position={"x": 5, "y": 5})  # unit 0
        detail = page.get_by_test_id("unit-detail")
        expect(detail.locator("canvas.filmstrip")).to_be_visible(timeout=30_000)
        expect(detail).to_contain_text("2 logged steps")
        expect(detail).to_contain_text("1 step is not shown: it could not be read (step 1: ")
        page.screenshot(path=str(ARTIFACTS / "detail-unreadable-step.png"))


def test_a_run_of_a_newer_version_is_named_beside_the_readable_ones(browser_context, partial_url):
    with plugin_page(browser_context, partial_url) as page:
        grid = page.get_by_test_id("unit-grid")
        expect(grid).to_have_attribute("data-step", "2", timeout=30_000)
        expect(grid).to_have_attribute("aria-busy", "false")
        note = page.get_by_test_id("problems-note")
        expect(note).to_contain_text("upgrade the package")
        expect(note).to_contain_text(f"{FUTURE_RUN} / {support.TAG}: plugin content: format version 99 is newer")
        expect(page.get_by_test_id("run-select").locator("option")).to_have_text([BROKEN_RUN])
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "grid-beside-newer-run.png"))


HUGE_STEPS = [2**53 + 1, 2**53 + 2]  # one JavaScript number: only their strings tell them apart


def test_steps_beyond_2_53_are_each_viewable(browser_context, tmp_path):
    """int64 steps stay exact from the server to the page and back (the API allows up to 2**63 - 1)."""
    logged = support.write_run(tmp_path, "huge", HUGE_STEPS, units=3)
    with support.tensorboard(tmp_path, load_fast=True) as url:
        wait_for_steps(url, "huge", HUGE_STEPS[-1])
        with plugin_page(browser_context, url) as page:
            grid = page.get_by_test_id("unit-grid")
            expect(grid).to_have_attribute("data-step", str(HUGE_STEPS[1]), timeout=30_000)
            latest = grid.evaluate("canvas => canvas.toDataURL()")
            page.get_by_role("button", name="Previous step").click()
            expect(grid).to_have_attribute("data-step", str(HUGE_STEPS[0]))
            expect(page.get_by_test_id("step-input")).to_have_value(str(HUGE_STEPS[0]))
            assert grid.evaluate("canvas => canvas.toDataURL()") != latest  # the other step's data
            step_input = page.get_by_test_id("step-input")
            step_input.fill(str(HUGE_STEPS[1]))
            step_input.press("Enter")
            expect(grid).to_have_attribute("data-step", str(HUGE_STEPS[1]))
    assert sorted(logged) == HUGE_STEPS
