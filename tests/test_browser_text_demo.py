"""The text demo (a char-level LSTM on standard-library source) end to end
in a real browser: its tokens grid, the unit that tracks brackets best
(sorted by that annotation) and its detail, served by the real
``tensorboard`` command. Its screenshots (``tests/artifacts/text-*.png``)
are the README's (``docs/screenshot-text-*.png`` are copies); set
``TEXT_DEMO_FULL=1`` to take them from a default-length run (about a
minute) instead of the short one the test suite runs.
"""

import contextlib
import io
import os
import re
import urllib.parse

import pytest

import support
from demo import __main__ as demo_main
from test_browser import CHROMIUM, Tab

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (make chromium)"
)

FULL = os.environ.get("TEXT_DEMO_FULL") == "1"
ARGS = ["--data", "text", "--device", "cpu"] + ([] if FULL else ["--steps", "300", "--log-every", "100"])
LAST_STEP = 1500 if FULL else 300


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The text demo's logdir served by TensorBoard: ``(url, what the demo printed)``."""
    logdir = tmp_path_factory.mktemp("text_demo")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        demo_main.main(["--logdir", str(logdir), *ARGS])
    with support.tensorboard(logdir, load_fast=True) as url:
        query = urllib.parse.urlencode({"run": "text", "tag": demo_main.TAG})
        support.wait_for(lambda: support.get(f"{url}/data/plugin/rnn_units/steps?{query}")[1].count(b'"step"')
                         >= 3, 60, what="the text demo's steps")
        yield url, printed.getvalue()


@pytest.fixture
def tab(served, tmp_path):
    url, _ = served
    with support.chromium(tmp_path / "profile", height=1000) as context:
        page = context.new_page()
        tab = Tab(page)
        page.goto(f"{url}/#rnn_units")
        expect(tab.grid).to_have_attribute("data-step", str(LAST_STEP), timeout=60_000)
        yield tab
        assert tab.errors == [] and tab.dialogs == []
        context.close()


def test_the_text_demo_grid_and_its_bracket_unit(tab, served):
    _, printed = served
    expect(tab.grid).to_have_attribute("data-display", "tokens")
    expect(tab.grid).to_have_attribute("aria-busy", "false")
    tab.screenshot("text-grid.png")

    # The unit the demo names as tracking brackets best comes first when sorted by that annotation.
    named = re.search(r"in_brackets: unit (\d+) \(r = ([-+]\d\.\d\d)\)", printed)
    assert named, printed
    tab.get("sort-select").select_option("annotation:in_brackets")
    expect(tab.grid).to_have_attribute("data-order", "annotation:in_brackets")
    box = tab.grid.bounding_box()
    tab.grid.click(position={"x": 10, "y": 10})  # the first cell
    detail = tab.get("unit-detail")
    expect(detail).to_have_attribute("data-unit", named.group(1))
    expect(detail).to_contain_text("in_brackets")
    tokens = detail.get_by_test_id("unit-tokens")
    assert len(tokens.get_attribute("data-window")) == 10  # L = 10 single characters
    assert len(tokens.get_attribute("data-rollout")) == 10
    expect(detail.locator(".exemplar-signal").first).to_be_visible()
    assert box["width"] > 0
    tab.screenshot("text-detail.png")
