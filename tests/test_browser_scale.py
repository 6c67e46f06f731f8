"""The unit grid at 4,096 units, in a real browser (Debian's Chromium via
Playwright, the real ``tensorboard``, event files written with the project's
API): it fetches and draws only what is on screen, its canvas covers only
the view, scrolling reaches the last units, and ``data-draw-ms`` says how
long each redraw took. Timing itself is ``benchmarks/bench_draw.py``'s job.

The screenshot goes to ``tests/artifacts/grid-4096.png`` (look at it).
"""

import math
import os
import re

import pytest

import support
from test_browser import CHROMIUM, Tab, wait_for_steps

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

BIG_RUN, BIG_UNITS = "big", 4096
SMALL_RUN, SMALL_UNITS = "small", 169
# Cells of 24 x 24 px (the fitted zoom of 8 inputs, 4 + 3 rows): a grid of
# 3 million px at 1280 x 900, more than the canvas is made to hold.
BIG_LAYOUT = dict(input_size=8, window=4, length=10, rollout=3)
STEPS = [0, 1]
BLOCK = 256  # units per /features request (frontend/store.js)

# Records every value data-draw-ms takes (a MutationObserver sees each write, equal or not).
RECORDER = """() => {
    const canvas = document.querySelector("[data-testid=unit-grid]");
    window.draws = [];
    new MutationObserver(() => window.draws.push({ms: canvas.dataset.drawMs, step: canvas.dataset.step ?? null,
        busy: canvas.getAttribute("aria-busy")})).observe(canvas, {attributes: true, attributeFilter: ["data-draw-ms"]});
}"""

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (make chromium)"
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale_logdir")
    support.write_run(path, BIG_RUN, STEPS, units=BIG_UNITS, variants=len(STEPS), **BIG_LAYOUT)
    support.write_run(path, SMALL_RUN, STEPS, units=SMALL_UNITS, variants=len(STEPS))
    with support.tensorboard(path, load_fast=True) as url:
        for run in (BIG_RUN, SMALL_RUN):
            wait_for_steps(url, run, STEPS[-1])
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with support.chromium(tmp_path_factory.mktemp("chromium_profile")) as context:
        yield context


class ScaleTab(Tab):
    """test_browser's Tab on this logdir, recording every redraw's data-draw-ms."""

    def latest_step(self, run):
        return STEPS[-1]

    @property
    def scroller(self):
        return self.frame.locator(".grid-scroll")

    def draws(self):
        """The redraws since the last call: [{ms, step, busy}] (attribute values, strings)."""
        return self.plugin_frame.evaluate("() => window.draws.splice(0)")

    def redrawn(self, until):
        """Waits for a redraw satisfying `until(draw)`; returns every redraw up to it."""
        seen = []

        def done():
            seen.extend(self.draws())
            return any(until(d) for d in seen)

        support.wait_for(done, 30, interval=0.05, what="a redraw")
        return seen

    def drawn_at_rest(self):
        """Waits until the grid has no placeholder on screen and no redraw is pending."""
        expect(self.grid).to_have_attribute("aria-busy", "false", timeout=30_000)
        self.page.wait_for_timeout(300)
        self.draws()


@pytest.fixture
def tab(browser, base_url):
    page = browser.new_page()
    tab = ScaleTab(page)
    page.goto(f"{base_url}/#rnn_units")
    expect(tab.grid).to_have_attribute("data-step", str(STEPS[-1]), timeout=60_000)
    tab.plugin_frame.evaluate(RECORDER)
    yield tab
    page.close()
    assert tab.errors == []
    assert tab.dialogs == []


def assert_durations(draws):
    assert draws, "no redraw"
    for draw in draws:
        ms = float(draw["ms"])
        assert math.isfinite(ms) and ms >= 0, draw


def test_every_redraw_says_how_long_it_took(tab):
    for run, units in ((SMALL_RUN, SMALL_UNITS), (BIG_RUN, BIG_UNITS)):
        tab.show_run(run)
        expect(tab.grid).to_have_attribute("data-units", str(units))
        expect(tab.grid).to_have_attribute("data-draw-ms", re.compile(r"^\d+(\.\d+)?$"))
        tab.drawn_at_rest()

        step_input = tab.get("step-input")  # a step change
        step_input.fill(str(STEPS[0]))
        step_input.press("Enter")
        assert_durations(tab.redrawn(lambda d: d["step"] == str(STEPS[0]) and d["busy"] == "false"))
        tab.drawn_at_rest()

    tab.scroller.evaluate("s => { s.scrollTop += s.clientHeight; }")  # a scroll of the big layer
    assert_durations(tab.redrawn(lambda d: d["busy"] == "false"))
    tab.drawn_at_rest()
    tab.frame.get_by_label("Zoom").press("ArrowRight")  # a zoom
    assert_durations(tab.redrawn(lambda d: d["busy"] == "false"))


def test_a_4096_unit_layer_fetches_and_draws_only_what_is_on_screen(tab):
    tab.show_run(BIG_RUN)
    expect(tab.grid).to_have_attribute("data-units", str(BIG_UNITS))
    tab.drawn_at_rest()
    view = tab.scroller.evaluate("s => ({width: s.clientWidth, height: s.clientHeight, full: s.scrollHeight})")
    box = tab.grid.bounding_box()
    # The canvas covers the view, not the 4,096 cells: the grid scrolls under it.
    assert box["height"] <= view["height"] + 1 and box["width"] <= view["width"] + 1, (box, view)
    assert view["full"] > 3 * view["height"], view
    pixels = tab.grid.evaluate("c => c.width * c.height")
    assert pixels <= 1.01 * view["width"] * view["height"] * tab.page.evaluate("devicePixelRatio") ** 2

    # Only the blocks of units on screen were fetched: those of the top rows.
    shown = view["height"] / view["full"] * BIG_UNITS
    requested = {q["units"] for q in tab.feature_requests(BIG_RUN)}
    starts = sorted(int(u.split(":")[0]) for u in requested)
    assert starts and starts[-1] <= shown + BLOCK, (starts, shown)
    assert f"{BIG_UNITS - BLOCK}:{BIG_UNITS}" not in requested

    tab.scroller.evaluate("s => { s.scrollTop = s.scrollHeight; }")
    # (wait_for_timeout: the sync API takes in the page's events, the requests, only during its calls)
    support.wait_for(lambda: tab.page.wait_for_timeout(100) or f"{BIG_UNITS - BLOCK}:{BIG_UNITS}" in {
        q["units"] for q in tab.feature_requests(BIG_RUN)}, 30, what="the last block of units fetched")
    expect(tab.grid).to_have_attribute("aria-busy", "false", timeout=30_000)
    assert tab.grid.bounding_box()["height"] <= view["height"] + 1  # still the view, at the bottom
    last = last_cell(tab)
    assert last, "no cell drawn at the bottom"
    tab.screenshot("grid-4096.png")

    # The rightmost cell of the bottom row is the last unit: hovering and clicking it say so.
    tab.grid.hover(position=last)
    expect(tab.frame.locator(".readout")).to_contain_text(f"unit {BIG_UNITS - 1} ·")
    tab.grid.click(position=last)
    expect(tab.get("unit-detail").get_by_role("heading", name=f"Unit {BIG_UNITS - 1}")).to_be_visible()


def test_zooming_a_4096_unit_layer_keeps_the_canvas_to_the_view(tab):
    tab.show_run(BIG_RUN)
    tab.drawn_at_rest()
    before = tab.scroller.evaluate("s => s.scrollHeight")
    zoom = tab.frame.get_by_label("Zoom")
    for _ in range(4):
        zoom.press("ArrowRight")
    tab.redrawn(lambda d: d["busy"] == "false")
    tab.drawn_at_rest()
    view = tab.scroller.evaluate("s => ({width: s.clientWidth, height: s.clientHeight, full: s.scrollHeight})")
    assert view["full"] > 2 * before, (before, view)  # cells more than twice as large
    box = tab.grid.bounding_box()
    assert box["height"] <= view["height"] + 1 and box["width"] <= view["width"] + 1, (box, view)
    assert tab.colours("unit-grid") > 16  # drawn with data, not placeholders
    tab.draws()
    tab.scroller.evaluate("s => { s.scrollTop = s.scrollHeight; }")
    tab.redrawn(lambda d: d["busy"] == "true")  # the bottom rows' blocks are fetched...
    expect(tab.grid).to_have_attribute("aria-busy", "false", timeout=30_000)  # ...and drawn
    last = last_cell(tab)
    tab.grid.hover(position=last)
    expect(tab.frame.locator(".readout")).to_contain_text(f"unit {BIG_UNITS - 1} ·")


def last_cell(tab):
    """{x, y} (CSS px of the canvas) a little inside the bottom-right corner of the
    lowest, rightmost cell drawn with data (placeholders are #f5f5f5), or None."""
    return tab.grid.evaluate("""canvas => {
        const {width, height} = canvas;
        const data = canvas.getContext("2d").getImageData(0, 0, width, height).data;
        const painted = (x, y) => {
            const p = 4 * (y * width + x);
            const [r, g, b, a] = data.slice(p, p + 4);
            return a === 255 && !(r === 245 && g === 245 && b === 245) && !(r === 224 && g === 224 && b === 224);
        };
        for (let y = height - 1; y >= 0; y--) {
            for (let x = width - 1; x >= 0; x--) {
                if (painted(x, y)) {
                    const dpr = width / canvas.getBoundingClientRect().width;
                    return {x: x / dpr - 3, y: y / dpr - 3};
                }
            }
        }
        return null;
    }""")
