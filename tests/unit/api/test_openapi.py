"""The OpenAPI document: valid 3.0, every route described (and only those), usable by Swagger UI."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from falcon import inspect
from schemathesis.specs.openapi.definitions import OPENAPI_30  # the official 3.0 schema, as shipped

from recsys_api.openapi import EXAMPLE_TEXT, build_spec

HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"}


def app_routes(app):
    """(METHOD, path) of every responder in the app's router (not Falcon's automatic ones,
    nor the HEAD that mirrors each GET: recsys_api.head, said once in the spec's info)."""
    routes = set()
    for route in inspect.inspect_routes(app):
        for method in route.methods:
            if method.method == "HEAD" and method.function_name == "head_as_get":
                continue
            if not method.internal and method.method in HTTP_METHODS:
                routes.add((method.method, route.path))
    return routes


def spec_routes(spec):
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


def test_the_spec_is_a_valid_openapi_3_0_document():
    spec = build_spec()

    jsonschema.Draft4Validator(OPENAPI_30).validate(spec)
    assert spec["openapi"] == "3.0.3"


def test_the_spec_has_no_absolute_servers_entry():
    assert "servers" not in build_spec()


def test_every_route_of_the_app_is_in_the_spec_and_nothing_else(harness):
    assert app_routes(harness.app) == spec_routes(build_spec())


def test_the_app_serves_the_spec(harness):
    response = harness.client.simulate_get("/openapi.json")

    assert response.status_code == 200
    assert response.json == build_spec()


def test_every_ref_resolves():
    spec = build_spec()
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    schemas = spec["components"]["schemas"]
    assert refs
    assert all(ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas for ref in refs)


def test_only_builds_uploads_rollbacks_and_live_updates_need_the_bearer_token():
    spec = build_spec()
    secured = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if operation.get("security")
    }

    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "the API token, RECSYS_API_TOKEN",
    }
    assert secured == {("PUT", "/v1/engine/archive"), ("POST", "/v1/engine/rollback"), ("POST", "/v1/engine/builds"),
                       ("POST", "/v1/publications"), ("GET", "/v1/publications/pushed"),
                       ("DELETE", "/v1/publications/pushed"), ("POST", "/v1/publications/changes/refused")}
    for method, path in secured:
        responses = spec["paths"][path][method.lower()]["responses"]
        assert {"401", "403"} <= set(responses)


def test_every_operation_documents_its_responses_with_schemas():
    for path, item in build_spec()["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                assert response["description"], (method, path, status)
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"], (method, path, status)


def _validator(name):
    """A jsonschema validator for a component schema (OpenAPI's `nullable` turned into a null type)."""
    spec = build_spec()

    def convert(node):
        if isinstance(node, dict):
            node = {k: convert(v) for k, v in node.items()}
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            if "$ref" in node:
                node["$ref"] = node["$ref"].replace("#/components/schemas/", "#/definitions/")
            return node
        if isinstance(node, list):
            return [convert(v) for v in node]
        return node

    definitions = convert(copy.deepcopy(spec["components"]["schemas"]))
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})


def test_the_try_it_out_examples_are_valid_and_answered_on_the_demo_text(harness):
    operation = build_spec()["paths"]["/v1/recommendations"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    validator = _validator("RecommendationRequest")

    for example in examples.values():
        validator.validate(example["value"])
        response = harness.client.simulate_post("/v1/recommendations", json=example["value"])
        assert response.status_code == 200, response.json
    assert examples["text"]["value"]["text"] == EXAMPLE_TEXT


@pytest.mark.parametrize(("body", "valid"), [
    ({"text": "x"}, True),
    ({"publication_id": "p", "k": 100, "strict": True, "label": None}, True),
    ({"text": "x", "publication_id": "p"}, False),
    ({}, False),
    ({"text": "x", "k": 0}, False),
    ({"text": "x", "k": 101}, False),
    ({"text": "   "}, False),
    ({"text": "x", "other": 1}, False),
    ({"text": "x", "year_min": -1}, False),
    ({"text": "x", "exclude_ids": [""]}, False),
])
def test_the_request_schema_states_the_same_rules_as_the_validation(harness, body, valid):
    schema_says = _validator("RecommendationRequest").is_valid(body)
    api_says = harness.client.simulate_post("/v1/recommendations", json=body).status_code == 200

    assert schema_says is valid
    assert api_says is valid


def test_the_responses_of_a_round_trip_match_their_schemas(harness):
    harness.install()
    assert _validator("RecommendationResult").is_valid(
        harness.client.simulate_post("/v1/recommendations", json={"text": "x"}).json
    )
    assert _validator("EngineManifest").is_valid(harness.client.simulate_get("/v1/engine").json)
    assert _validator("Workers").is_valid(harness.client.simulate_get("/v1/workers").json)
    assert _validator("Ready").is_valid(harness.client.simulate_get("/ready").json)
