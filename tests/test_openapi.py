"""The OpenAPI description at /openapi.json and /docs, and a schemathesis run over the whole
spec against a real server on both backends: no 5xx, every error a JSON `{"error": ...}`, every
answer matching the spec (status codes, content types, schemas).

The run uses an admin's bearer token so calls get past authentication. Event streams are left
out (they never end; tests/api covers them), and generated cases never touch the admin's own
account, so the token stays valid; if an operation revokes it anyway (logout, token deletion),
the test logs in again before the next one.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import orjson
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleetwatch.fleet.login_limits import LoginLimiter
from tests.conftest import login
from tests.server import RunningServer

#: Generated cases per operation and generation mode: bounded so the suite stays fast.
MAX_EXAMPLES = int(os.environ.get("FLEETWATCH_SCHEMATHESIS_EXAMPLES", "5"))
#: Operations run last: they may revoke the token the run uses.
LAST = ("/api/v1/fleet/logout", "/api/v1/fleet/me/tokens/{token_id}")


def error_body_is_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """A custom check: every 4xx/5xx answer is a JSON object with a string `error`."""
    if response.status_code < 400:
        return None
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise AssertionError(
            f"{response.status_code} answer is not JSON: {response.content[:200]!r}"
        ) from exc
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        raise AssertionError(f"{response.status_code} answer has no 'error' string: {body!r}")
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_body_is_json,
]


def test_spec_describes_the_api(live_server: RunningServer) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    assert {"bearer", "nodeKey"} <= set(spec["components"]["securitySchemes"])
    tags = {t["name"] for t in spec["tags"]}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            assert op.get("tags") and set(op["tags"]) <= tags, where
            assert op["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, where
            assert "422" not in op["responses"], where
            if path.startswith(("/api/v1/fleet/hosts", "/core/", "/docs/")):
                assert op["security"] == [{"bearer": []}], where
    assert "requestBody" in spec["paths"]["/core/local-query-tasks"]["post"]
    login_body = spec["paths"]["/api/v1/fleet/login"]["post"]["requestBody"]
    assert "$ref" in login_body["content"]["application/json"]["schema"]
    page = httpx.get(f"{live_server.url}/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower()


def test_schemathesis_over_the_whole_spec(live_server: RunningServer, admin_token: str) -> None:
    url = live_server.url
    # Every generated failed login comes from 127.0.0.1: with more examples they would reach
    # the per-address limit, and logging in again after /logout would get 429.
    live_server.services.login_limiter = LoginLimiter(address_limit=1_000_000)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    me = httpx.get(f"{url}/api/v1/fleet/me", headers={"Authorization": f"Bearer {admin_token}"})
    admin_id = me.json()["user"]["id"]
    token = [admin_token]
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the spec does not load: {result}"
        operations.append(result.ok())
    operations.sort(key=lambda op: op.path in LAST)
    failures: list[str] = []
    ran = 0
    for operation in operations:
        if operation.path.endswith("/events"):
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        ).filter(
            lambda case: (
                (case.path_parameters or {}).get("user_id") not in (admin_id, str(admin_id))
            )
        )

        @settings(
            max_examples=MAX_EXAMPLES * 2,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            response = case.call(
                base_url=url, headers={"Authorization": f"Bearer {token[0]}"}, timeout=30
            )
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collect all, then report them all
            failures.append(f"{operation.label}: {exc}"[:3000])
        ran += 1
        check = httpx.get(f"{url}/api/v1/fleet/me", headers={"Authorization": f"Bearer {token[0]}"})
        if check.status_code == 401:
            token[0] = login(live_server)
    assert ran >= 70, ran
    assert not failures, "\n\n".join(failures)
