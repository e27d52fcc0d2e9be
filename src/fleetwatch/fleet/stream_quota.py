"""Open streams per user: each WebSocket or SSE stream of a query task or a live query
campaign holds one of the user's slots (`max_streams_per_user`) while it is open.

Slots are counted per node, in memory: a user whose streams a load balancer spreads over N
nodes may hold up to N times the limit (each node still bounds what it serves). A slot is
freed when its stream ends, by any path (an SSE response gives it back when the response
ends: `fleetwatch.api.sse.SlotStreamingResponse`; a WebSocket when its handler returns); as
a last resort it also frees itself when it is garbage collected.

A slot also remembers the token (its stored hash) the stream was opened with: when that
token is revoked, `end_streams` ends the slot (`StreamSlot.ended` resolves with the reason)
and its stream closes with an error (see `fleetwatch.fleet.stream_tokens`).
"""

from __future__ import annotations

import asyncio
import weakref

from fleetwatch.fleet.errors import TooMany


class StreamSlot:
    """One open stream of one user; `release` (idempotent) gives the slot back."""

    def __init__(self, quota: StreamQuota, user_id: int, token_hash: str) -> None:
        self._quota: StreamQuota | None = quota
        self.user_id = user_id
        #: The stored hash of the token that opened the stream.
        self.token_hash = token_hash
        #: Why the stream was ended by the server (its token was revoked), or None.
        self.ended_reason: str | None = None
        self._ended: asyncio.Future[str] | None = None

    @property
    def ended(self) -> asyncio.Future[str]:
        """Resolves with the reason when the stream must end (never cancel it)."""
        if self._ended is None:
            self._ended = asyncio.get_running_loop().create_future()
            if self.ended_reason is not None:
                self._ended.set_result(self.ended_reason)
        return self._ended

    @property
    def ended_message(self) -> str:
        """What the client is told when the stream is ended."""
        return f"{self.ended_reason}; this stream has ended: log in again and reopen it"

    def end(self, reason: str) -> None:
        """Ask the stream to end with `reason` (its token is no longer valid)."""
        if self.ended_reason is not None:
            return
        self.ended_reason = reason
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(reason)

    def release(self) -> None:
        quota, self._quota = self._quota, None
        if quota is not None:
            quota._release(self)

    def __del__(self) -> None:
        self.release()


class StreamQuota:
    """Counts each user's open streams on this node and refuses one past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[int, int] = {}
        # weak: a slot that is garbage collected unreleased frees itself (see the docstring)
        self._slots: weakref.WeakSet[StreamSlot] = weakref.WeakSet()

    def open_streams(self, user_id: int) -> int:
        """The user's streams open on this node."""
        return self._open.get(user_id, 0)

    def acquire(self, user_id: int, token_hash: str) -> StreamSlot:
        """A slot for one more stream opened with the token of hash `token_hash`; TooMany
        (429) when the user holds the limit."""
        held = self._open.get(user_id, 0)
        if held >= self.limit:
            raise TooMany(
                f"you have {held} query task and live query streams open, the most one user "
                f"may (max_streams_per_user = {self.limit}); close a WebSocket or SSE stream "
                "you no longer read, then open this one again"
            )
        self._open[user_id] = held + 1
        slot = StreamSlot(self, user_id, token_hash)
        self._slots.add(slot)
        return slot

    def token_hashes(self) -> set[str]:
        """The hashes of the tokens the open streams on this node were opened with."""
        return {slot.token_hash for slot in list(self._slots) if slot.ended_reason is None}

    def end_streams(
        self, reason: str, *, user_id: int | None = None, token_prefix: str | None = None
    ) -> int:
        """End the open streams of `user_id` (all of them, or those whose token hash starts
        with `token_prefix`), or of any user whose token hash starts with `token_prefix`;
        returns how many were open."""
        if user_id is None and token_prefix is None:
            raise ValueError("end_streams needs a user_id or a token_prefix")
        ended = 0
        for slot in list(self._slots):
            if user_id is not None and slot.user_id != user_id:
                continue
            if token_prefix is not None and not slot.token_hash.startswith(token_prefix):
                continue
            if slot.ended_reason is None:
                ended += 1
            slot.end(reason)
        return ended

    def _release(self, slot: StreamSlot) -> None:
        self._slots.discard(slot)
        held = self._open.get(slot.user_id, 0) - 1
        if held > 0:
            self._open[slot.user_id] = held
        else:
            self._open.pop(slot.user_id, None)
