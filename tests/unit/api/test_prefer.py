"""The Prefer header (RFC 7240): respond-async honoured, unknown preferences ignored, garbage refused."""

from __future__ import annotations

import re

import pytest

from recsys_api.errors import ApiError
from recsys_api.openapi import build_spec
from recsys_api.prefer import PATTERN, Preference, parse_prefer

BODY = {"text": "Neural networks classify images.", "k": 1}

WELL_FORMED = [
    (None, {}),
    ("", {}),
    ("respond-async", {"respond-async": Preference("respond-async")}),
    ("Respond-Async", {"respond-async": Preference("respond-async")}),
    ("wait=10, respond-async", {"wait": Preference("wait", "10"), "respond-async": Preference("respond-async")}),
    ("return = minimal ; foo=\"a, b;c\" ; ; Bar", {
        "return": Preference("return", "minimal", {"foo": "a, b;c", "bar": None}),
    }),
    ('x="quoted \\"pair\\""', {"x": Preference("x", 'quoted "pair"')}),
    (" ,respond-async , ,", {"respond-async": Preference("respond-async")}),
    ("wait=1, wait=2", {"wait": Preference("wait", "1")}),  # only the first counts
    ("handling=lenient;\tq", {"handling": Preference("handling", "lenient", {"q": None})}),
]
MALFORMED = [
    ("respond async", "expected ',' or ';' after the preference 'respond' at character 9, found 'a'"),
    ('"respond-async"', "expected a preference name (a token) at character 1, found '\"'"),
    ("=x", "expected a preference name (a token) at character 1"),
    ("wait=", "expected the value of 'wait' (a token or a quoted string) at character 6, found the end"),
    ("wait=\"10", "at character 6, found '\"'"),
    ("respond-async; =1", "expected a parameter name of 'respond-async' (a token) at character 16"),
    ("respond-async; p=", "expected the value of the parameter 'p'"),
    ("respond-async}", "found '}'"),
    ("répondre", "found 'é'"),
]


@pytest.mark.parametrize(("header", "expected"), WELL_FORMED)
def test_well_formed_headers_parse(header, expected):
    assert parse_prefer(header) == expected


@pytest.mark.parametrize(("header", "rule"), MALFORMED)
def test_malformed_headers_are_400_saying_where_and_what(header, rule):
    with pytest.raises(ApiError) as raised:
        parse_prefer(header)

    assert raised.value.status_code == 400
    assert rule in raised.value.description
    assert repr(header) in raised.value.description


def test_the_specs_pattern_for_prefer_agrees_with_the_parser():
    parameters = build_spec()["paths"]["/v1/recommendations"]["post"]["parameters"]
    assert [p["schema"] for p in parameters if p["name"] == "Prefer"] == [{"type": "string", "pattern": PATTERN}]

    for header, _ in WELL_FORMED:
        assert header is None or re.match(PATTERN, header), header
    for header, _ in MALFORMED:
        assert not re.match(PATTERN, header), header


@pytest.mark.parametrize("header", [
    "respond-async", "RESPOND-ASYNC", "respond-async; foo", "wait=5, respond-async", 'foo="a,b", respond-async',
    "return=minimal,respond-async",
])
def test_respond_async_is_honoured_wherever_it_is_in_the_header(harness, header):
    response = harness.client.simulate_post("/v1/recommendations", json=BODY, headers={"Prefer": header})

    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async"


@pytest.mark.parametrize("header", ["", "return=minimal", "wait=10", "handling=strict; x=1", "respond-sync"])
def test_unknown_well_formed_preferences_are_ignored(harness, header):
    response = harness.client.simulate_post("/v1/recommendations", json=BODY, headers={"Prefer": header})

    assert response.status_code == 200
    assert "preference-applied" not in response.headers


@pytest.mark.parametrize("header", ["respond-async garbage!!", "@@@", "respond-async;;=", '"respond-async"'])
def test_a_garbage_prefer_header_is_400_and_sends_nothing(harness, header):
    response = harness.client.simulate_post("/v1/recommendations", json=BODY, headers={"Prefer": header})

    assert response.status_code == 400
    assert response.json["title"] == "Invalid header value"
    assert "the Prefer header is not valid (RFC 7240)" in response.json["description"]
    assert harness.actors.requests == []
