"""Open streams end when the token they were opened with stops being valid.

A WebSocket or SSE stream authenticates once, when it opens; without this, a stream opened
with a stolen session would keep delivering after its owner logged out or changed their
password. Each stream's slot (`fleetwatch.fleet.stream_quota`) remembers its token's hash;
a revocation ends the slots of that token (or of every token of the user):

- at once on the node that revoked it (`UserService.on_revoke`);
- at once on the other nodes of a cluster, told over the bus (channel `tokens-revoked`;
  only the user id and a 16-character prefix of the token's hash are sent);
- within `stream_token_check_interval` seconds otherwise: every node re-reads, in one
  query, whether the tokens of its open streams are still valid. This catches what no
  announcement covers: a message lost while a node was cut off from Redis, nodes without
  Redis, a change made by another process (`fleetwatch admin`), a login session that
  expired by being idle (`session_idle_timeout`; an open stream is not a use of its token).
"""

from __future__ import annotations

import logging

import orjson

from fleetwatch.bus.bus import Bus
from fleetwatch.fleet.stream_quota import StreamQuota
from fleetwatch.fleet.users import Revocation, UserService
from fleetwatch.periodic import Periodic

log = logging.getLogger(__name__)

#: Characters of a token's hash sent over the bus (the token id the API shows).
PREFIX = 16
#: The reason given when the periodic re-check finds a stream's token gone.
INVALID = "the token this stream was opened with was revoked or expired"


class StreamTokenWatch:
    """Ends the streams whose token was revoked, on this node and (told) on the others."""

    CHANNEL = "tokens-revoked"

    def __init__(self, users: UserService, quota: StreamQuota, bus: Bus, interval: float) -> None:
        self.users = users
        self.quota = quota
        self.bus = bus
        self._check = Periodic(
            "stream-token-check",
            self.check,
            interval,
            failure="re-checking the tokens of open streams failed",
        )
        bus.subscribe(self.CHANNEL, self._on_message)
        users.on_revoke = self.revoked

    def start(self) -> None:
        self._check.start()

    async def stop(self) -> None:
        await self._check.stop()

    def revoked(self, revocation: Revocation) -> None:
        """End this node's streams of the revoked tokens, and tell the other nodes."""
        self._end(revocation)
        prefix = revocation.token_prefix
        payload = {
            "reason": revocation.reason,
            "user_id": revocation.user_id,
            "token_prefix": None if prefix is None else prefix[:PREFIX],
        }
        self.bus.publish(self.CHANNEL, orjson.dumps(payload))

    def _on_message(self, payload: bytes) -> None:
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            log.warning("ignored a malformed %s message", self.CHANNEL)
            return
        user_id, prefix = data.get("user_id"), data.get("token_prefix")
        self._end(
            Revocation(
                str(data.get("reason") or "the token was revoked"),
                user_id if isinstance(user_id, int) else None,
                prefix if isinstance(prefix, str) else None,
            )
        )

    def _end(self, revocation: Revocation) -> None:
        if revocation.user_id is None and not revocation.token_prefix:
            return  # would match every stream: never sent, and not to be trusted
        ended = self.quota.end_streams(
            revocation.reason, user_id=revocation.user_id, token_prefix=revocation.token_prefix
        )
        if ended:
            log.info("ended %d stream(s): %s", ended, revocation.reason)

    async def check(self) -> None:
        """End the open streams whose token no longer authenticates (one query)."""
        open_tokens = self.quota.token_hashes()
        if not open_tokens:
            return
        valid = await self.users.valid_token_hashes(open_tokens)
        for token_hash in open_tokens - valid:
            self.quota.end_streams(INVALID, token_prefix=token_hash)
