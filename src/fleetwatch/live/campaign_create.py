"""Creating a campaign: validate, resolve its targets, hold its user to their limit, store
its two documents and wake its hosts."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from fleetwatch.fleet.app_config import LIVE_QUERIES_DISABLED
from fleetwatch.fleet.errors import Forbidden, Invalid, TooMany
from fleetwatch.fleet.host_state import HostState
from fleetwatch.fleet.targets import LabelLookup, Targets, resolve_targets
from fleetwatch.index import Action, Write
from fleetwatch.live.campaign import Campaign
from fleetwatch.live.campaign_destinations import Names, check_destinations
from fleetwatch.live.campaign_docs import CAMPAIGN_KIND, TARGETS_KIND, campaign_link, targets_link
from fleetwatch.live.campaign_limits import CampaignLimits
from fleetwatch.live.campaign_log import CampaignLog
from fleetwatch.live.sample import Sample, choose
from fleetwatch.sql_check import check_live_sql_off_loop
from fleetwatch.storage.counters import next_id

# The service's logger: its messages keep the name operators filter on.
log = logging.getLogger("fleetwatch.live.campaigns")


class CampaignCreation(CampaignLog):
    """The part of `CampaignService` that creates campaigns."""

    labels: LabelLookup
    known_team: Callable[[int], bool]
    #: Per user, campaigns being created on this node (not active yet): counted against
    #: max_campaigns_per_user so concurrent requests cannot overshoot it.
    _starting: dict[int, int]
    #: The kill switch; the app replaces it with the runtime setting (fleet.app_config).
    disabled: Callable[[], bool]
    #: The destination names a campaign may list (live/campaign_destinations.py).
    destination_names: Names

    if TYPE_CHECKING:

        async def _finish(self, campaign: Campaign, status: str, now: float) -> None: ...

    async def create(
        self,
        sql: object,
        targets: Targets,
        *,
        user_id: int | None = None,
        query_id: int | None = None,
        timeout: float | None = None,
        queue_offline: bool = True,
        queue_expiry: float | None = None,
        may_target: Callable[[HostState], bool] | None = None,
        wake: bool = True,
        sample: Sample | None = None,
        rerun_of: int | None = None,
        max_rows: int | None = None,
        max_bytes: int | None = None,
        destinations: object = None,
    ) -> Campaign:
        """Validate, resolve the targets, store and start a campaign; wake its hosts.

        `max_rows` / `max_bytes` cap what the whole campaign stores (the settings'
        campaign_max_rows / campaign_max_bytes when None; see live/campaign_limits.py).
        `destinations` names where its result rows are also sent (a list of names from
        `destination_names`; see live/campaign_destinations.py).

        `may_target` limits the hosts to those the user may query; a host outside it is
        treated as unknown, so its id does not leak. With `wake=False` the caller wakes the
        held reads later (`wake_hosts`): a fleet-wide wake floods the index with results, and
        a write queued behind them (the API's audit record) would delay its response.
        A `sample` asks a random subset of the resolved hosts (fleetwatch.live.sample);
        `rerun_of` names the campaign a re-run repeats (fleetwatch.live.rerun).
        """
        if self.disabled():
            raise Forbidden(LIVE_QUERIES_DISABLED)
        query = await check_live_sql_off_loop(sql)
        sent_to = check_destinations(destinations, self.destination_names())
        if targets.empty:
            raise Invalid(
                "no targets: give targets [{type: host|label|team|all, id}] or selected "
                "{hosts, labels, teams}"
            )
        allowed = may_target or (lambda _host: True)

        def known_host(host_id: int) -> bool:
            state = self.hosts.by_id(host_id)
            return state is not None and allowed(state)

        host_ids = {
            h
            for h in resolve_targets(
                targets, self.hosts.all(), known_host, self.labels, self.known_team
            )
            if known_host(h)
        }
        if not host_ids:
            raise Invalid("the targets select no hosts: no host is in those labels or teams")
        timeout = self.settings.live_query_timeout if timeout is None else timeout
        if not 0 < timeout <= 24 * 3600:
            raise Invalid(
                "timeout must be greater than 0 and at most 86400 seconds (a day): send the "
                "seconds to wait for the online targets"
            )
        if queue_expiry is None:
            queue_expiry = self.settings.live_query_queue_expiry
        if queue_expiry < 0 or queue_expiry > 30 * 24 * 3600:
            raise Invalid("queue_expiry must be between 0 and 2592000 seconds (30 days)")
        left_out: set[int] = set()
        shown: dict[str, int] | None = None
        if sample is not None:
            chosen = choose(host_ids, sample)
            left_out = host_ids - chosen
            shown = {"of": len(host_ids), "chosen": len(chosen)}
            host_ids = chosen
        default = self._default_limits()
        limits = CampaignLimits(max_rows or default.max_rows, max_bytes or default.max_bytes)
        if limits.max_rows < 1 or limits.max_bytes < 1:
            raise Invalid("max_rows and max_bytes must be positive integers")
        with self._reservation(user_id):
            return await self._start(
                query,
                targets,
                host_ids,
                left_out=left_out,
                sample=shown,
                rerun_of=rerun_of,
                query_id=query_id,
                user_id=user_id,
                timeout=timeout,
                queue_offline=queue_offline,
                queue_expiry=queue_expiry,
                wake=wake,
                limits=limits,
                destinations=sent_to,
            )

    @contextlib.contextmanager
    def _reservation(self, user_id: int | None) -> Iterator[None]:
        """Count a campaign being created against its user's limit (TooMany past it)."""
        if user_id is None:
            yield
            return
        self._check_limit(user_id)
        self._starting[user_id] = self._starting.get(user_id, 0) + 1
        try:
            yield
        finally:
            left = self._starting[user_id] - 1
            if left:
                self._starting[user_id] = left
            else:
                del self._starting[user_id]

    def asking(self, user_id: int) -> int:
        """The user's campaigns still asking hosts: running, or queued for offline hosts
        (each is a query in those hosts' next distributed/read)."""
        return sum(
            1
            for c in self._active.values()
            if c.user_id == user_id
            and c.status != "stopped"
            and (c.status == "running" or bool(c.pending))
        )

    def _check_limit(self, user_id: int) -> None:
        """TooMany (429) when the user already has max_campaigns_per_user campaigns asking."""
        limit = self.settings.max_campaigns_per_user
        held = self.asking(user_id) + self._starting.get(user_id, 0)
        if held >= limit:
            raise TooMany(
                f"you have {held} live queries running or queued for offline hosts, the most "
                f"one user may (max_campaigns_per_user = {limit}); stop one you no longer need "
                "(POST /api/v1/fleet/campaigns/{id}/stop) or wait for it to finish, or run with "
                '"queue_offline": false so that it ends with its online hosts'
            )

    async def _start(
        self,
        query: str,
        targets: Targets,
        host_ids: set[int],
        *,
        left_out: set[int],
        sample: dict[str, int] | None,
        rerun_of: int | None,
        query_id: int | None,
        user_id: int | None,
        timeout: float,
        queue_offline: bool,
        queue_expiry: float,
        wake: bool,
        limits: CampaignLimits,
        destinations: tuple[str, ...] = (),
    ) -> Campaign:
        """Store and start a validated campaign; wake its hosts unless told not to."""
        now = time.time()
        online = frozenset(
            h
            for h in host_ids
            if (s := self.hosts.by_id(h)) and self.hosts.status(s, now) == "online"
        )
        expires = now + timeout
        if queue_offline:
            expires = max(expires, now + queue_expiry)
        campaign = Campaign(
            id=await next_id(self.index.db, "campaign"),
            query=query,
            query_id=query_id,
            user_id=user_id,
            targets=targets,
            host_ids=frozenset(host_ids),
            online_at_start=online,
            created_at=now,
            deadline=now + timeout,
            expires_at=expires,
            pending=set(host_ids) if queue_offline else set(online),
            rerun_of=rerun_of,
            sample=sample,
            queue_offline=queue_offline,
            limits=limits,
            destinations=destinations,
        )
        if not campaign.online_at_start:
            log.info(
                "campaign %s: no target is online; queued for %d hosts",
                campaign.id,
                len(campaign.pending),
            )
        self._creating.add(campaign.id)
        try:
            await self.index.apply(
                [
                    Write(
                        Action.PUT,
                        targets_link(campaign.id),
                        TARGETS_KIND,
                        {
                            "campaign_id": campaign.id,
                            "host_ids": sorted(campaign.host_ids),
                            "online_host_ids": sorted(campaign.online_at_start),
                            "queue_offline": queue_offline,
                            # what a canary left out: a "remaining" re-run asks them
                            "sample_left_out": sorted(left_out),
                        },
                    ),
                    Write(
                        Action.PUT, campaign_link(campaign.id), CAMPAIGN_KIND, campaign.to_json()
                    ),
                ]
            )
        finally:
            self._creating.discard(campaign.id)
        # Normally activated by the change listener during the commit; answers may even
        # have been counted already. If delivery failed, activate what we wrote.
        campaign = self._active.get(campaign.id) or campaign
        if campaign.id not in self._active:
            campaign.doc_version = 0
            self._activate(campaign)
        if campaign.status == "running" and campaign.unanswered == 0:
            await self._finish(campaign, "finished", now)
        if wake:
            self.wake_hosts(campaign)
        return campaign

    def wake_hosts(self, campaign: Campaign) -> None:
        """Answer the held distributed/read requests of the campaign's pending hosts now."""
        self.wakeups.wake(campaign.pending)
