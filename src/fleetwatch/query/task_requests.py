"""What clients send about query tasks: the factories, task links, PATCH and webhook
subscription bodies, and `TaskError`, the refusal answered as an HTTP error."""

from __future__ import annotations

import re
import secrets
from typing import Any

import orjson

from fleetwatch.query.spec_enums import TaskStage
from fleetwatch.query.task_records import FINAL_STAGES

#: The task factories and their paths.
FACTORIES = {
    "local-query-tasks": "/core/local-query-tasks",
    "query-tasks": "/core/query-tasks",
}
#: Where the server's own standing tasks live (`QueryTaskService.ensure_system`): under no
#: factory, so no user can create, list, change or delete one through the task API.
SYSTEM_BASE = "/core/system-query-tasks"
SYSTEM_FACTORY = "system"
#: The expiry of a task that never expires (Xenon's "never", 2**63-1).
NEVER = 2**63 - 1
#: Xenon's QueryTaskService.DEFAULT_EXPIRATION_SECONDS.
DEFAULT_EXPIRATION_SECONDS = 600
#: Longest a direct task's result pages are kept (seconds after it ran): they cannot be
#: deleted (the task is not stored), so a later expiry, "never" included, is lowered to it.
DIRECT_PAGES_SECONDS = DEFAULT_EXPIRATION_SECONDS
_ID = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")


class TaskError(Exception):
    """A request the task service refuses; `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def link_taken(link: str, holder: int | None, owner_id: int | None, sees_all: bool) -> TaskError:
    """409 for a task the creator may see; 404 for one they may not (ids do not leak)."""
    if sees_all or (holder is not None and holder == owner_id):
        return TaskError(409, f"a query task already exists at {link}; DELETE it first")
    return TaskError(
        404,
        f"documentSelfLink: {link} cannot be used; choose another id (or omit "
        "documentSelfLink to get a generated one)",
    )


def system_link(name: str) -> str:
    """The link of the server's own task `name` (letters, digits, '.', '_', '~', '-')."""
    if not _ID.match(name):
        raise ValueError(f"not a task id: {name!r}")
    return f"{SYSTEM_BASE}/{name}"


def is_system(link: str) -> bool:
    return link.startswith(SYSTEM_BASE + "/")


def link_for(factory: str, given: str | None) -> str:
    """The link of a new task of `factory`: `given` (an id, or a link under the factory),
    or a random id."""
    base = FACTORIES[factory]
    if not given:
        return f"{base}/{secrets.token_hex(8)}"
    task_id = given
    if given.startswith("/"):
        if not given.startswith(base + "/"):
            raise TaskError(
                400,
                f"documentSelfLink: {given!r} must be under {base}/ (or give only the id)",
            )
        task_id = given[len(base) + 1 :]
    if not _ID.match(task_id):
        raise TaskError(
            400,
            f"documentSelfLink: {given!r}: a task id is 1-200 letters, digits, '.', '_', "
            "'~' or '-'",
        )
    return f"{base}/{task_id}"


def parse_patch(raw: object) -> tuple[TaskStage | None, Any, int | None]:
    """A task's PATCH body: (the final stage asked for, `taskInfo`, the new
    documentExpirationTimeMicros); TaskError 400 naming what is wrong."""
    if not isinstance(raw, dict):
        raise TaskError(
            400,
            "body: expected a JSON object with taskInfo.stage or documentExpirationTimeMicros",
        )
    allowed = {"taskInfo", "documentExpirationTimeMicros", "documentSelfLink", "querySpec"}
    unknown = sorted(set(raw) - allowed)
    if "querySpec" in raw and raw["querySpec"] is not None:
        raise TaskError(400, "querySpec: a task's query cannot be changed; create a new task")
    if unknown:
        raise TaskError(
            400,
            f"{unknown[0]}: cannot be changed by PATCH (send taskInfo.stage "
            "or documentExpirationTimeMicros)",
        )
    stage: TaskStage | None = None
    info = raw.get("taskInfo")
    if info is not None:
        if not isinstance(info, dict):
            raise TaskError(400, "taskInfo: expected an object")
        value = info.get("stage")
        if value is not None:
            try:
                stage = TaskStage(value)
            except ValueError:
                raise TaskError(
                    400, f"taskInfo.stage: unknown stage {value!r} (use CANCELLED to stop)"
                ) from None
            if stage not in FINAL_STAGES:
                raise TaskError(
                    400,
                    f"taskInfo.stage: a task cannot be moved to {stage} (use CANCELLED, "
                    "FINISHED or FAILED)",
                )
    expiration = raw.get("documentExpirationTimeMicros")
    if expiration is not None and (
        not isinstance(expiration, int) or isinstance(expiration, bool) or expiration < 0
    ):
        raise TaskError(
            400,
            "documentExpirationTimeMicros: expected a non-negative integer "
            "(microseconds since the epoch)",
        )
    return stage, info, expiration


def parse_webhook(raw: object) -> tuple[str, bool]:
    """A webhook subscription's body: (callback URL, replayState); TaskError 400 naming
    what is wrong."""
    if not isinstance(raw, dict):
        raise TaskError(400, 'body: expected {"reference": callback URL, "replayState": bool}')
    reference = raw.get("reference")
    if not isinstance(reference, str) or not reference.startswith(("http://", "https://")):
        raise TaskError(400, "reference: expected an http:// or https:// callback URL")
    if len(reference) > 2048:
        raise TaskError(400, "reference: longer than 2048 characters")
    replay = raw.get("replayState", False)
    if not isinstance(replay, bool):
        raise TaskError(400, "replayState: expected true or false")
    return reference, replay


def decode_json(body: bytes) -> object:
    """A request body as JSON; TaskError 400 naming the problem."""
    if not body:
        raise TaskError(400, "body: expected a JSON object, got an empty body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TaskError(400, f"body: not valid JSON ({exc})") from None
