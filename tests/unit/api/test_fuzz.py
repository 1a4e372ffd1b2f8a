"""Property-based run of schemathesis against the app in-process (WSGI).

It generates valid and invalid requests from the app's own /openapi.json for every
operation and checks that no answer is a 5xx and that every answer matches the spec
(status documented, body schema, content type, headers, auth enforced, unsupported
methods refused). The app is ready (engines installed, a fake worker answers at once)
and a token is configured, so every path is reachable. Bounded to a few hundred
requests so it runs in seconds.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from recsys_api.openapi import build_spec

from .conftest import AUTH, build_harness, close_harness

# schemathesis loads the schema when the module is collected, so the app exists now;
# its worker thread starts only when the tests run (see the fixture).
_TMP = Path(tempfile.mkdtemp(prefix="recsys-fuzz-"))
_HARNESS = build_harness(_TMP, worker=False, keep_engines=3)
for _minutes in (1, 2, 3):
    _HARNESS.install(_minutes)

schemathesis.serializer.alias("application/zip", "application/octet-stream")  # uploads are raw bytes
schema = schemathesis.openapi.from_wsgi("/openapi.json", _HARNESS.app)


EXERCISED: dict[tuple[str, str], int] = {}


@schema.hook
def map_body(context, body):
    """JSON Schema cannot say ``year_min <= year_max``: order generated years so that
    schema-valid bodies are valid for the API too (the rule has its own unit tests)."""
    if isinstance(body, dict):
        low, high = body.get("year_min"), body.get("year_max")
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)) and low > high:
            body = {**body, "year_min": high, "year_max": low}
    return body


@pytest.fixture(scope="module", autouse=True)
def running_worker():
    _HARNESS.start_worker()
    yield
    close_harness(_HARNESS)
    shutil.rmtree(_TMP, ignore_errors=True)


# schemathesis' WSGI client reads a streamed body without calling the iterable's close()
# (a WSGI server must; gunicorn does), so the archive download's file is closed by GC.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_spec_and_never_fails_with_5xx(case):
    excluded = []
    if (case.method, case.path) == ("PUT", "/v1/engine/archive"):
        # Any bytes fit `format: binary`, but only a valid engine archive is accepted (400 otherwise).
        excluded.append(positive_data_acceptance)
    if case.path in ("/v1/engine/archive", "/v1/engine/files/{sha256}") and case.method in ("GET", "HEAD"):
        # Any string fits the Range header, but one past the file's end is rightly a 416; and any 64 hex
        # digits fit the path, but only the sha256 of a stored file is found (404 otherwise).
        excluded.append(positive_data_acceptance)
    if (case.method, case.path) == ("POST", "/v1/publications"):
        # Records follow the source's rules, which JSON Schema only approximates: an id at most once per
        # push, an 'abstract' or a 'text' (either may be blank if the other is not), 'full_text' as an alias.
        excluded.extend([positive_data_acceptance, negative_data_rejection])
    operation = (case.operation.method.upper(), case.operation.path)
    EXERCISED[operation] = EXERCISED.get(operation, 0) + 1
    case.call_and_validate(headers=AUTH, excluded_checks=excluded)


def test_every_operation_was_exercised():
    operations = {(method.upper(), path) for path, item in build_spec()["paths"].items() for method in item}
    # schemathesis skips the operation that serves the schema itself (checked in test_openapi.py)
    assert set(EXERCISED) == operations - {("GET", "/openapi.json")}
