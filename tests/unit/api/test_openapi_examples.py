"""The Swagger examples fit the corpus being served: /openapi.json's request examples are
the current engine's (its manifest's ``example``), generic before the first engine."""

from __future__ import annotations

from recsys.archive import pack
from recsys.engine import EngineMetadata
from recsys_api.openapi import EXAMPLE_TEXT, build_spec

from .conftest import BASE_TIME


def examples(response):
    operation = response.json["paths"]["/v1/recommendations"]["post"]
    return {name: e["value"] for name, e in operation["requestBody"]["content"]["application/json"]["examples"].items()}


def install_with_example(h, example, minutes=0):
    from datetime import timedelta

    folder = h.tmp / f"engine-{minutes}"
    folder.mkdir(parents=True)
    (folder / "data.json").write_text('{"x": 1}')
    archive = pack(folder, h.tmp / f"engine-{minutes}.zip", engine="stub",
                   metadata=EngineMetadata(publications=1, sentences=1),
                   created_at=BASE_TIME + timedelta(minutes=minutes), example=example)
    response = h.upload(archive.path)
    assert response.status_code == 201, response.json
    return response


def test_before_the_first_engine_the_examples_are_generic(harness):
    served = harness.client.simulate_get("/openapi.json")

    assert served.json == build_spec()
    assert examples(served)["text"]["text"] == EXAMPLE_TEXT
    assert "publication" not in examples(served)


def test_the_examples_are_the_current_engines_and_follow_a_new_one(harness):
    # Given an engine whose manifest has an example from its corpus
    install_with_example(harness, {"text": "Tides raised on a star by a giant planet.", "publication_id": "demo-0127"})

    # Then the spec's examples query that corpus: its text, and its publication by id
    first = examples(harness.client.simulate_get("/openapi.json"))
    assert first["text"] == {"text": "Tides raised on a star by a giant planet.", "k": 5}
    assert first["filtered"]["text"] == "Tides raised on a star by a giant planet."
    assert first["publication"] == {"publication_id": "demo-0127", "k": 5}
    assert harness.client.simulate_get("/v1/engine").json["example"]["publication_id"] == "demo-0127"

    # And a new engine brings its own
    install_with_example(harness, {"text": "Dark matter halos of dwarf galaxies.", "publication_id": "p7"}, minutes=1)
    second = examples(harness.client.simulate_get("/openapi.json"))
    assert (second["text"]["text"], second["publication"]["publication_id"]) == (
        "Dark matter halos of dwarf galaxies.", "p7")


def test_an_engine_without_an_example_gets_the_generic_one(harness):
    harness.install()

    served = harness.client.simulate_get("/openapi.json")

    assert served.json == build_spec()


def test_the_corpus_examples_are_valid_requests_answered_by_the_api(harness):
    install_with_example(harness, {"text": "Tides raised on a star.", "publication_id": "demo-0127"})

    for body in examples(harness.client.simulate_get("/openapi.json")).values():
        response = harness.client.simulate_post("/v1/recommendations", json=body)
        assert response.status_code == 200, (body, response.json)
