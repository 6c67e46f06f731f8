"""The displays beyond image rows in a real browser (issue 9): tokens and
series tags, exemplars, annotations and gates, against the real
``tensorboard`` command serving event files written with the project's API.

The tokens tag comes from a hand-built RNN with a planted unit that fires
only after one character: its detail must show that character last in its
window. Screenshots go to ``tests/artifacts/`` (look at them).
"""

import json
import math
import os
import re
import struct
import urllib.parse

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import support
import tensorboard_rnn_units as rnn_units
from test_browser import CHROMIUM, Tab

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"no Chromium at {CHROMIUM} (make chromium)"
)

# A character probe: letters and punctuation, a newline, a tab, and tokens that
# look like markup (they must be shown as text, never parsed).
MARKUP = "<img src=x onerror=alert(1)>"
VOCAB = [*"abcdefghijklmnop", " ", ".", "(", ")", "'", "<", "&", "\n", "\t", "q", MARKUP]
TRIGGER = "q"                  # the planted unit fires only on it
TOKENS_RUN = "chars"
TOKENS_TAG = "rnn/tokens"
TOKEN_UNITS = 16
PLANTED = 5                    # fires after TRIGGER: tanh(+3) there, tanh(-2) everywhere else
NEGATIVE = 1                   # its signal is never positive
TOKEN_WINDOW, TOKEN_ROLLOUT = 8, 4

SERIES_RUN = "sensors"
SERIES_TAG = "gru/series"
CHANNELS = ["accel <x>", "accel_y", "gyro"]
SERIES_UNITS = 9

IMAGE_RUN = "rows"
LATEST = {TOKENS_RUN: 1, SERIES_RUN: 0, IMAGE_RUN: 0}
TAGS = {TOKENS_RUN: TOKENS_TAG, SERIES_RUN: SERIES_TAG, IMAGE_RUN: support.TAG}


def token_probe(seed=0, sequences=48, length=40):
    """``(tokens (N, T) int64, annotations)``: random text where TRIGGER is rare
    (1 in 100 positions), sometimes right after a newline or MARKUP."""
    generator = np.random.default_rng(seed)
    common = [VOCAB.index(c) for c in VOCAB if c not in (TRIGGER, MARKUP)]
    tokens = generator.choice(common, size=(sequences, length))
    where = generator.random((sequences, length)) < 0.01
    where[:, :2] = False
    where[0, 20] = where[1, 30] = where[2, 15] = True   # a few for sure
    tokens[where] = VOCAB.index(TRIGGER)
    before = np.argwhere(where)
    for k, (n, t) in enumerate(before):
        if k % 3 == 0:
            tokens[n, t - 1] = VOCAB.index("\n")
        elif k % 3 == 1:
            tokens[n, t - 1] = VOCAB.index(MARKUP)
    annotations = {
        "is_q": tokens == VOCAB.index(TRIGGER),
        "vowel": np.isin(tokens, [VOCAB.index(c) for c in "aeio"]),
    }
    return torch.from_numpy(tokens), annotations


def planted_rnn(hidden=TOKEN_UNITS, seed=0):
    """An ``nn.RNN`` reading one-hot characters: unit PLANTED is tanh(3) right
    after TRIGGER and tanh(-2) elsewhere (no recurrence into it), unit NEGATIVE
    is always negative, the others are small random mixtures."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        rnn = torch.nn.RNN(len(VOCAB), hidden, batch_first=True)
        readout = torch.nn.Linear(hidden, len(VOCAB))
    with torch.no_grad():
        rnn.weight_ih_l0.mul_(0.5)
        rnn.weight_hh_l0.mul_(0.3)
        for unit in (PLANTED, NEGATIVE):
            rnn.weight_hh_l0[unit] = 0
            rnn.weight_ih_l0[unit] = 0
            rnn.bias_hh_l0[unit] = 0
        rnn.weight_ih_l0[PLANTED, VOCAB.index(TRIGGER)] = 5.0
        rnn.bias_ih_l0[PLANTED] = -2.0
        rnn.weight_ih_l0[NEGATIVE] = -torch.linspace(0, 1, len(VOCAB))
        rnn.bias_ih_l0[NEGATIVE] = -1.0
    return rnn, readout


def write_tokens_run(logdir):
    tokens, annotations = token_probe()
    probe = rnn_units.Probe(tokens, window=TOKEN_WINDOW, vocab=VOCAB, annotations=annotations)
    rnn, readout = planted_rnn()
    with SummaryWriter(os.path.join(logdir, TOKENS_RUN)) as writer:
        for step in (0, 1):
            rnn_units.add_rnn_units(writer, TOKENS_TAG, rnn, probe, readout=readout, rollout=TOKEN_ROLLOUT,
                                    weighting=("top", "relu", "bottom"), global_step=step)


def write_series_run(logdir):
    generator = torch.Generator().manual_seed(3)
    t = torch.arange(48, dtype=torch.float32)
    phase = torch.rand(24, 1, generator=generator) * 6
    x = torch.stack([torch.sin(t / 4 + phase), 0.5 * torch.cos(t / 7 + phase),
                     0.2 * torch.randn(24, 48, generator=generator).cumsum(1)], -1)
    probe = rnn_units.Probe(x, window=12, channel_names=CHANNELS)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        gru = torch.nn.GRU(len(CHANNELS), SERIES_UNITS, batch_first=True)
        readout = torch.nn.Linear(SERIES_UNITS, len(CHANNELS))
    with SummaryWriter(os.path.join(logdir, SERIES_RUN)) as writer:
        rnn_units.add_rnn_units(writer, SERIES_TAG, gru, probe, readout=readout, rollout=6, global_step=0)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("displays_logdir")
    write_tokens_run(path)
    write_series_run(path)
    support.write_run(path, IMAGE_RUN, [0], units=9, input_size=6, window=5, length=12, rollout=3)
    return path


@pytest.fixture(scope="module")
def base_url(logdir):
    with support.tensorboard(logdir, load_fast=True) as url:
        for run, step in LATEST.items():
            query = urllib.parse.urlencode({"run": run, "tag": TAGS[run]})
            support.wait_for(lambda: _steps(url, query) == step, 60, what=f"step {step} of {run}")
        yield url


def _steps(url, query):
    status, body = support.get(f"{url}/data/plugin/rnn_units/steps?{query}")
    steps = json.loads(body) if status == 200 else []
    return steps[-1]["step"] if steps else None


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with support.chromium(tmp_path_factory.mktemp("chromium_profile")) as context:
        yield context


@pytest.fixture
def tab(browser_context, base_url):
    page = browser_context.new_page()
    tab = Tab(page)
    page.goto(f"{base_url}/#rnn_units")
    expect(tab.grid).to_have_attribute("data-step", re.compile(r"\d+"), timeout=30_000)
    yield tab
    page.close()
    assert tab.errors == []
    assert tab.dialogs == []


def show(tab, run):
    tab.get("run-select").select_option(run)
    expect(tab.grid).to_have_attribute("data-step", str(LATEST[run]), timeout=30_000)
    expect(tab.grid).to_have_attribute("aria-busy", "false")


def open_unit(tab, unit):
    """Clicks the cell of `unit` in a grid in index order; returns the detail."""
    expect(tab.grid).to_have_attribute("data-order", "index")
    count = int(tab.grid.get_attribute("data-units"))
    cols = math.ceil(math.sqrt(count))  # near-square: these grids fit the page's width
    rows = -(-count // cols)
    box = tab.grid.bounding_box()
    tab.grid.click(position={"x": (unit % cols + 0.5) * box["width"] / cols,
                             "y": (unit // cols + 0.5) * box["height"] / rows})
    detail = tab.get("unit-detail")
    expect(detail).to_have_attribute("data-unit", str(unit))
    return detail


def route(base_url, name, **query):
    status, body = support.get(f"{base_url}/data/plugin/rnn_units/{name}?{urllib.parse.urlencode(query)}")
    assert status == 200, body
    return body


def test_a_planted_unit_shows_its_trigger_last_in_its_window(tab, base_url):
    show(tab, TOKENS_RUN)
    expect(tab.grid).to_have_attribute("data-display", "tokens")
    expect(tab.frame.locator(".display-key")).to_contain_text("most likely token")
    tab.screenshot("tokens-grid.png")

    detail = open_unit(tab, PLANTED)
    tokens = tab.get("unit-tokens")
    window = tokens.get_attribute("data-window")
    assert len(window) == TOKEN_WINDOW or MARKUP in window, window  # one character per position
    assert window.endswith(TRIGGER), window
    assert tokens.get_attribute("data-rollout") is not None
    expect(tokens).to_contain_text("likes")
    expect(detail.locator("canvas.logo").first).to_be_visible()
    # Its top windows are the data: each ends with the trigger, in its sentence.
    exemplars = detail.locator(".exemplar")
    expect(exemplars).to_have_count(8)
    expect(detail.locator(".exemplar-text .last").first).to_have_text(TRIGGER)
    lasts = detail.locator(".exemplar-text .last").all_text_contents()
    assert lasts and set(lasts) == {TRIGGER}, lasts
    signals = [float(s.split()[1]) for s in detail.locator(".exemplar-signal").all_text_contents()]
    assert signals == sorted(signals, reverse=True) and signals[0] > 0, signals
    # Newlines before the trigger are shown as a symbol; markup tokens stay text.
    expect(detail.locator(".exemplar-text").filter(has_text="⏎").first).to_be_visible()
    expect(detail.locator(".exemplar-text").filter(has_text=MARKUP).first).to_be_visible()
    assert tab.frame.locator("img").count() == 0
    # What it tracks: the trigger annotation, strongest first.
    first = detail.locator(".corr-row").first
    expect(first.locator(".corr-name")).to_have_text("is_q")
    value = float(first.locator(".corr-value").text_content().replace("−", "-"))
    assert value > 0.8, value
    tab.screenshot("tokens-detail.png")

    # The logo's readout names the most likely token of a column.
    logo = detail.locator("canvas.logo").first
    box = logo.bounding_box()
    logo.hover(position={"x": 44 + (TOKEN_WINDOW - 0.5) * 30, "y": box["height"] / 2})
    expect(detail.locator(".logo-readout")).to_contain_text(f"window position 0: “{TRIGGER}” 1")


def test_the_detail_says_never_positive_and_offers_the_bottom_weighting(tab):
    show(tab, TOKENS_RUN)
    weighting = tab.get("weighting-select")
    expect(weighting.locator("option")).to_have_text(["top", "relu", "bottom"])
    detail = open_unit(tab, NEGATIVE)
    expect(detail.locator("dt", has_text="Never positive")).to_be_visible()
    expect(detail.locator("dd.never-positive")).to_contain_text("bottom weighting shows")
    expect(detail.locator("dt", has_text="Dead")).to_have_count(0)
    tab.screenshot("tokens-never-positive.png")
    tab.page.keyboard.press("Escape")

    # Under the bottom weighting it has windows: what drives it most negative.
    weighting.select_option("bottom")
    expect(tab.grid).to_have_attribute("data-step", str(LATEST[TOKENS_RUN]))
    detail = open_unit(tab, NEGATIVE)
    expect(detail).to_contain_text("bottom weighting")
    expect(detail.locator("dd.dead")).to_have_text("no")
    expect(detail.locator(".exemplar")).to_have_count(8)


def test_units_sort_by_their_correlation_with_an_annotation(tab, base_url):
    show(tab, TOKENS_RUN)
    sort = tab.get("sort-select")
    values = sort.locator("option").evaluate_all("options => options.map(o => o.value)")
    assert values[-2:] == ["annotation:is_q", "annotation:vowel"], values
    expect(sort.locator("option[value='annotation:is_q']")).to_have_text("annotation: is_q")
    sort.select_option("annotation:is_q")
    expect(tab.grid).to_have_attribute("data-order", "annotation:is_q")
    tab.grid.click(position={"x": 8, "y": 8})  # the first cell: the unit most correlated with is_q
    expect(tab.get("unit-detail")).to_have_attribute("data-unit", str(PLANTED))
    tab.page.keyboard.press("Escape")
    # The order is the backend's correlations, descending.
    _, arrays = support.unpack_wire(route(base_url, "features", run=TOKENS_RUN, tag=TOKENS_TAG, step=1))
    correlations = arrays["annotation_correlation"][:, 0]
    assert int(np.argmax(correlations)) == PLANTED


def test_series_cells_are_charts_and_the_detail_names_the_channels(tab):
    show(tab, SERIES_RUN)
    expect(tab.grid).to_have_attribute("data-display", "series")
    key = tab.frame.locator(".display-key")
    for name in CHANNELS:
        expect(key).to_contain_text(name)
    tab.screenshot("series-grid.png")
    detail = open_unit(tab, 0)
    legend = detail.locator(".series-legend").first
    for name in CHANNELS:
        expect(legend).to_contain_text(name)
    expect(detail.locator("canvas.series-chart").first).to_be_visible()
    chart = detail.locator("canvas.series-chart").first
    box = chart.bounding_box()
    chart.hover(position={"x": box["width"] - 20, "y": box["height"] / 2})
    expect(detail.locator(".series-readout").first).to_contain_text(f"{CHANNELS[0]} ")
    # A GRU: its gates and time constant.
    expect(detail.locator(".bar-label", has_text="reset")).to_be_visible()
    expect(detail.locator(".bar-label", has_text="update")).to_be_visible()
    expect(detail.locator("dd.time-constant")).to_contain_text(re.compile(r"steps|∞"))
    expect(detail.locator(".exemplar canvas.exemplar-picture")).to_have_count(8)
    tab.screenshot("series-detail.png")


def test_image_rows_exemplars_are_pictures(tab):
    show(tab, IMAGE_RUN)
    expect(tab.grid).to_have_attribute("data-display", "image_rows")
    detail = open_unit(tab, 0)
    expect(detail.locator(".exemplar canvas.exemplar-picture")).to_have_count(8)
    expect(detail.locator(".exemplar-signal").first).to_contain_text("signal")
    tab.screenshot("image-rows-exemplars.png")


def test_the_frontend_decodes_int32_arrays(tab):
    values = np.array([-(2**31), -1, 0, 7, 2**31 - 1], "<i4").tobytes()
    header = {"arrays": [{"name": "top/exemplar_sequence", "dtype": "int32", "shape": [1, 5],
                          "axes": ["unit", "exemplar"], "offset": 0, "nbytes": len(values)}]}
    for _ in range(3):  # the offset's digits change the header's length
        encoded = json.dumps(header).encode()
        header["arrays"][0]["offset"] = -(-(4 + len(encoded)) // 8) * 8
    encoded = json.dumps(header).encode()
    start = header["arrays"][0]["offset"]
    buffer = struct.pack("<I", len(encoded)) + encoded
    buffer += bytes(start - len(buffer)) + values
    decoded = tab.plugin_frame.evaluate("""async (bytes) => {
        const model = await import("./static/model.js");
        const {arrays, ignored} = model.decodeWire(new Uint8Array(bytes).buffer);
        const a = arrays["top/exemplar_sequence"];
        return {ignored, kind: a.data.constructor.name, data: Array.from(a.data), axes: a.axes};
    }""", list(buffer))
    assert decoded == {"ignored": [], "kind": "Int32Array", "data": [-(2**31), -1, 0, 7, 2**31 - 1],
                       "axes": ["unit", "exemplar"]}


def test_token_text_helpers(tab):
    """Plain text joins single characters, sets longer tokens apart; shown text pictures control characters."""
    joined, shown = tab.plugin_frame.evaluate("""async () => {
        const {joinTokens} = await import("./static/model.js");
        const {visibleToken} = await import("./static/views/tokens.js");
        return [[["a", "b", "cd", "e", "f"], ["x"], []].map(joinTokens),
                ["\\n", "\\t", " ", "", "<b>", "\\u0007"].map((t) => visibleToken(t, {space: true}))];
    }""")
    assert joined == ["ab cd ef", "x", ""]
    assert shown == ["⏎", "⇥", "␣", "∅", "<b>", "␇"]


def test_tokens_and_series_draw_in_compare_mode_and_as_differences(tab):
    for run in (TOKENS_RUN, SERIES_RUN):
        show(tab, run)
        plain = tab.pixels()
        tab.frame.get_by_label("Difference from mean").check()
        expect(tab.frame.locator(".display-key")).to_contain_text(re.compile("mean|than in the probe"))
        support.wait_for(lambda: tab.pixels() != plain, 10, what="the difference drawn")
        tab.screenshot(f"{run}-difference.png")
        tab.frame.get_by_label("Difference from mean").uncheck()
    show(tab, TOKENS_RUN)
    tab.get("compare-toggle").check()
    expect(tab.grid).to_have_attribute("data-compare", "pair")
    expect(tab.grid).to_have_attribute("data-step-b", str(LATEST[TOKENS_RUN]))
    tab.grid.click(position={"x": 8, "y": 8})
    detail = tab.get("unit-detail")
    expect(detail).to_have_attribute("data-unit", "0")
    logos = detail.locator("canvas.logo")
    expect(logos.nth(0)).to_be_visible()
    expect(logos.nth(1)).to_be_visible()
    expect(detail.locator(".logo-caption").nth(1)).to_have_text("B")
    tab.screenshot("tokens-compare-detail.png")
