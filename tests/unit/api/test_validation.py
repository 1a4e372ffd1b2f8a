"""The request schema: one object validates, is served in /openapi.json, and holds Query's limits."""

from __future__ import annotations

import pytest
from jsonschema import Draft4Validator, Draft202012Validator

from recsys import query_limits
from recsys.domain import Query
from recsys.errors import InvalidQuery
from recsys_api.openapi import build_spec
from recsys_api.schemas import RECOMMENDATION_REQUEST
from recsys_api.validation import RECOMMEND_FIELDS, REQUEST_VALIDATOR, OpenApi30Validator

PROPERTIES = RECOMMENDATION_REQUEST["properties"]


def test_the_validator_uses_the_schema_the_spec_shows(harness):
    spec = build_spec()
    operation = spec["paths"]["/v1/recommendations"]["post"]

    # The operation refers to the component, and the component is the validator's own schema object
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendationRequest"
    }
    assert spec["components"]["schemas"]["RecommendationRequest"] is REQUEST_VALIDATOR.schema
    # and what the app serves is that schema, unchanged
    served = harness.client.simulate_get("/openapi.json").json
    assert served["components"]["schemas"]["RecommendationRequest"] == REQUEST_VALIDATOR.schema


def test_the_schema_is_a_valid_draft_4_schema_and_names_every_field():
    OpenApi30Validator.check_schema(RECOMMENDATION_REQUEST)
    assert RECOMMEND_FIELDS == ("text", "publication_id", "like", "unlike", "k", "offset", "exclude_ids", "label",
                                "year_min", "year_max", "min_score", "diversity", "lexical_weight", "strict")


@pytest.mark.parametrize(("value", "valid"), [(10, True), (10.0, False), (True, False), (None, False), ("10", False)])
def test_integer_means_a_json_integer(value, valid):
    assert OpenApi30Validator({"type": "integer"}).is_valid(value) is valid


def test_the_draft_matters_draft_2020_12_would_take_10_0():
    # Why the validator is draft 4 based: newer drafts count 10.0 as an integer.
    assert Draft202012Validator({"type": "integer"}).is_valid(10.0)
    assert not Draft4Validator({"type": "integer"}).is_valid(10.0)
    assert not REQUEST_VALIDATOR.is_valid({"text": "t", "k": 10.0})
    assert REQUEST_VALIDATOR.is_valid({"text": "t", "k": 10})


@pytest.mark.parametrize(("schema", "value", "valid"), [
    ({"type": "integer", "nullable": True}, None, True),
    ({"type": "integer"}, None, False),
    ({"type": "integer", "nullable": False}, None, False),
    ({"type": "string", "nullable": True, "minLength": 1}, None, True),
    ({"type": "string", "nullable": True, "minLength": 1}, "", False),
])
def test_nullable_allows_null_and_only_null(schema, value, valid):
    assert OpenApi30Validator(schema).is_valid(value) is valid


# Each limit Query checks, and where the schema states it.
LIMITS = [
    ("MIN_K", PROPERTIES["k"]["minimum"]),
    ("MAX_K", PROPERTIES["k"]["maximum"]),
    ("DEFAULT_K", PROPERTIES["k"]["default"]),
    ("MAX_TEXT_CHARS", PROPERTIES["text"]["maxLength"]),
    ("MAX_ID_CHARS", PROPERTIES["publication_id"]["maxLength"]),
    ("MAX_ID_CHARS", PROPERTIES["exclude_ids"]["items"]["maxLength"]),
    ("MAX_EXCLUDE_IDS", PROPERTIES["exclude_ids"]["maxItems"]),
    ("MIN_LIKE", PROPERTIES["like"]["minItems"]),
    ("MAX_EXAMPLES", PROPERTIES["like"]["maxItems"]),
    ("MAX_EXAMPLES", PROPERTIES["unlike"]["maxItems"]),
    ("MAX_TEXT_CHARS", PROPERTIES["like"]["items"]["properties"]["text"]["maxLength"]),
    ("MAX_ID_CHARS", PROPERTIES["like"]["items"]["properties"]["publication_id"]["maxLength"]),
    ("MAX_OFFSET", PROPERTIES["offset"]["maximum"]),
    ("MIN_DIVERSITY", PROPERTIES["diversity"]["minimum"]),
    ("MAX_DIVERSITY", PROPERTIES["diversity"]["maximum"]),
    ("MAX_LABEL_CHARS", PROPERTIES["label"]["maxLength"]),
    ("MIN_YEAR", PROPERTIES["year_min"]["minimum"]),
    ("MAX_YEAR", PROPERTIES["year_min"]["maximum"]),
    ("MIN_YEAR", PROPERTIES["year_max"]["minimum"]),
    ("MAX_YEAR", PROPERTIES["year_max"]["maximum"]),
]


@pytest.mark.parametrize(("name", "in_schema"), LIMITS)
def test_each_limit_of_the_domain_is_the_schemas(name, in_schema):
    assert getattr(query_limits, name) == in_schema


# Query at each of the schema's limits, and one step past it.
AT_AND_PAST = [
    ({"k": PROPERTIES["k"]["minimum"]}, {"k": PROPERTIES["k"]["minimum"] - 1}),
    ({"k": PROPERTIES["k"]["maximum"]}, {"k": PROPERTIES["k"]["maximum"] + 1}),
    ({"text": "x" * PROPERTIES["text"]["maxLength"]}, {"text": "x" * (PROPERTIES["text"]["maxLength"] + 1)}),
    ({"text": None, "publication_id": "p" * PROPERTIES["publication_id"]["maxLength"]},
     {"text": None, "publication_id": "p" * (PROPERTIES["publication_id"]["maxLength"] + 1)}),
    ({"exclude_ids": {str(i) for i in range(PROPERTIES["exclude_ids"]["maxItems"])}},
     {"exclude_ids": {str(i) for i in range(PROPERTIES["exclude_ids"]["maxItems"] + 1)}}),
    ({"label": "l" * PROPERTIES["label"]["maxLength"]}, {"label": "l" * (PROPERTIES["label"]["maxLength"] + 1)}),
    ({"year_min": PROPERTIES["year_min"]["minimum"]}, {"year_min": PROPERTIES["year_min"]["minimum"] - 1}),
    ({"year_max": PROPERTIES["year_max"]["maximum"]}, {"year_max": PROPERTIES["year_max"]["maximum"] + 1}),
    ({"text": None, "like": [{"text": "t"}] * PROPERTIES["like"]["maxItems"]},
     {"text": None, "like": [{"text": "t"}] * (PROPERTIES["like"]["maxItems"] + 1)}),
    ({"text": None, "like": [{"publication_id": "p"}] * PROPERTIES["like"]["minItems"]}, {"text": None, "like": []}),
    ({"unlike": [{"text": "t"}] * PROPERTIES["unlike"]["maxItems"]},
     {"unlike": [{"text": "t"}] * (PROPERTIES["unlike"]["maxItems"] + 1)}),
    ({"offset": PROPERTIES["offset"]["maximum"]}, {"offset": PROPERTIES["offset"]["maximum"] + 1}),
    ({"offset": PROPERTIES["offset"]["minimum"]}, {"offset": PROPERTIES["offset"]["minimum"] - 1}),
    ({"diversity": PROPERTIES["diversity"]["maximum"]}, {"diversity": PROPERTIES["diversity"]["maximum"] + 0.01}),
    ({"diversity": PROPERTIES["diversity"]["minimum"]}, {"diversity": PROPERTIES["diversity"]["minimum"] - 0.01}),
]


@pytest.mark.parametrize(("at", "past"), AT_AND_PAST)
def test_query_accepts_what_the_schema_accepts_and_refuses_one_step_past(at, past):
    base = {"text": "a text"}

    assert Query(**{**base, **at})
    with pytest.raises(InvalidQuery):
        Query(**{**base, **past})


def test_query_defaults_to_the_schemas_k():
    assert Query(text="t").k == PROPERTIES["k"]["default"]
    assert Query.from_dict({"text": "t"}).k == PROPERTIES["k"]["default"]
