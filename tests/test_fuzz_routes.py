"""Hostile requests to every route: random, huge, unicode, empty and repeated
parameters never give a 5xx, and every 4xx says why (property tests).

The plugin runs inside TensorBoard's WSGI app over the Python loader and the
shared ``logdir`` of real event files (conftest.py).
"""

import urllib.parse

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import support  # noqa: E402

pytestmark = pytest.mark.slow  # 2,300 requests: CI's, not the inner loop's

ROUTES = "/data/plugin/rnn_units"
# Each route with the parameters it reads.
PARAMETERS = {
    "/tags": [],
    "/steps": ["run", "tag"],
    "/features": ["run", "tag", "step", "units"],
    "/unit": ["run", "tag", "unit"],
    "/change": ["run", "tag", "step_a", "step_b"],
    "/drift": ["run", "tag", "threshold"],
    "/similarity": ["run", "tag"],
    "/match": ["run", "tag", "step", "other_run", "other_step"],
    "/order": ["run", "tag", "step"],
    "/coverage": ["run", "tag", "weighting"],
}
RUNS = ["train", "resized", "shrunk", "mixed", "v1"]

# Values a hostile or careless client sends: real names, numbers of every
# size and sign, ranges, unicode, control characters, huge strings.
values = st.one_of(
    st.sampled_from(RUNS + [support.TAG, "rnn/future", "rnn/inline"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=600).map(str),
    st.tuples(st.integers(-3, 10), st.integers(-3, 10)).map(lambda r: f"{r[0]}:{r[1]}"),
    st.sampled_from(["", ":", "1e3", "nan", "inf", "-0", "0x10", " 1", "1 ", "٣", "１", "top", "relu"]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=300, max_size=5000),
    st.just("9" * 5000),
)


@pytest.fixture(scope="module")
def client(logdir):
    return support.python_loader_client(logdir.path)


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(
    route=st.sampled_from(sorted(PARAMETERS)),
    chosen=st.dictionaries(
        st.sampled_from(sorted({p for ps in PARAMETERS.values() for p in ps}) + ["junk"]), values, max_size=6
    ),
    good=st.booleans(),
    repeat=st.booleans(),
)
def test_no_request_gives_a_server_error(client, route, chosen, good, repeat):
    params = dict(chosen)
    if good:  # mostly valid requests, one value hostile
        params = {"run": "train", "tag": support.TAG, "step": "3", "unit": "2", "step_a": "0", "step_b": "5",
                  "other_run": "mixed", "other_step": "0", **chosen}
    pairs = list(params.items()) * (2 if repeat else 1)
    response = client.get(f"{ROUTES}{route}?{urllib.parse.urlencode(pairs)}")
    assert response.status_code < 500, (route, params, response.get_data(as_text=True)[:500])
    if response.status_code >= 400:
        assert response.get_data(as_text=True).strip(), (route, params)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(path=st.one_of(st.text(max_size=300), st.sampled_from(["../plugin.py", "%2e%2e/x.js", "a/../../b.css"])))
def test_no_static_path_gives_a_server_error(client, path):
    response = client.get(f"{ROUTES}/static/{urllib.parse.quote(path)}")
    assert response.status_code in (200, 400, 404), (path, response.status_code)
