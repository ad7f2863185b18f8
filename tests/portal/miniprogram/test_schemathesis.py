"""schemathesis against the API's own OpenAPI document, in process (WSGI), with a valid bearer
token so the authenticated operations run: no 5xx, every response as documented."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.portal.miniprogram.conftest import API, LI_MING, bearer, signed_in
from tests.portal.miniprogram.test_readings import IN_WINDOW


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the run is about the HTTP contract, not the database."""
    import shutil

    target = tmp_path / "dianfei.sqlite"
    shutil.copy(sqlite_template, target)
    return f"sqlite:///{target}"


# Schema-valid requests that our rules refuse (a code WeChat rejects, a wrong holder name, a bill
# that is not owed) get a documented 4xx Error, which this check counts as a failure.
RULES_NOT_IN_SCHEMA = positive_data_acceptance


@pytest.fixture
def token(client, demo, clock) -> str:  # type: ignore[no-untyped-def]
    clock.set(IN_WINDOW)  # the reading window is open: reading calls go past the window check
    return signed_in(client, "schemathesis", LI_MING[0])


def test_api_matches_its_openapi_document(app, token):  # type: ignore[no-untyped-def]
    # The schema is loaded from the running app here rather than by schemathesis's pytest
    # fixture loader (schemathesis.pytest.from_fixture), which pytest 9 breaks.
    schema = schemathesis.openapi.from_wsgi(f"{API}/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    calls = []
    for operation, mode in itertools.product(operations, GenerationMode):
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=10, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):  # type: ignore[no-untyped-def]
            response = case.call_and_validate(headers=bearer(token),
                                              excluded_checks=[RULES_NOT_IN_SCHEMA])
            calls.append(response.status_code)

        check()
    assert len(calls) >= 10 * len(operations)  # both modes ran, with examples
    assert any(200 <= status < 300 for status in calls)  # the token let calls through
