"""What a user's continuous queries may see, as a scope query (`fleetwatch.query.scope`).

A global admin sees the whole index (no scope). Live query campaigns are private to the user
who started them and to global admins (as `GET /api/v1/fleet/campaigns/{id}` is), so every
other user's tasks are scoped. A global observer or maintainer sees everything except:

- `fleet:campaign` documents other users started, and their `fleet:result` documents (each
  result carries its campaign's `campaign_user_id`; a result without one is admins' only);
- `fleet:campaign-targets` documents (the server's own bookkeeping of campaigns);
- `fleet:activity` documents of other users' live queries (they hold the campaign's SQL and
  targets; the REST feed shows them redacted, a scope can only leave them out).

A team-only user's query tasks are restricted further, to:

- `fleet:host` documents whose `team_id` is one of the user's teams;
- `fleet:log` and `fleet:policy-result` documents of those teams' hosts, and
  `fleet:result` documents of those hosts answering the user's own campaigns (each carries
  the team its host was in when it was written: a host moved to another team leaves its
  earlier answers behind);
- `fleet:campaign` documents the user started;
- `fleet:label` documents (labels are global);
- `fleet:policy` documents of global policies (`team_id` null: every user reads them) and of
  the user's teams;
- `fleet:team` documents of the user's teams.

Nothing else (activities, user `/docs` collections, query internals) is visible to them.
"""

from __future__ import annotations

from collections.abc import Collection

from fleetwatch.fleet.activities import ACTIVITY_KIND, PRIVATE_TYPES
from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.host_state import HOST_KIND
from fleetwatch.fleet.label_definitions import LABEL_KIND
from fleetwatch.fleet.result_logs import LOG_KIND
from fleetwatch.fleet.teams import TEAM_KIND
from fleetwatch.fleet.users import UserService
from fleetwatch.live.campaign_docs import CAMPAIGN_KIND, CREATOR, RESULT_KIND, TARGETS_KIND
from fleetwatch.policies.model import POLICY_KIND
from fleetwatch.policies.model import RESULT_KIND as POLICY_RESULT_KIND
from fleetwatch.query.scope import all_of, any_of, none_of, term, wildcard
from fleetwatch.query.spec import Query

KIND = "documentKind"
#: Kinds whose documents belong to a host's team through their `team_id` field.
TEAM_OWNED_KINDS = (HOST_KIND, LOG_KIND, POLICY_RESULT_KIND, POLICY_KIND)
#: Kinds a global observer or maintainer sees only their own of (or none of).
PRIVATE_KINDS = (CAMPAIGN_KIND, RESULT_KIND, TARGETS_KIND)


def document_scope(access: Access) -> Query | None:
    """The scope of the user's query tasks; None for a global admin (everything)."""
    if access.global_at_least("admin"):
        return None
    me = access.user.id
    own_campaigns = all_of(term(KIND, CAMPAIGN_KIND), term("user_id", me))
    teams = access.visible_teams()
    if teams is None:
        private_activities = [
            all_of(term(KIND, ACTIVITY_KIND), term("type", kind)) for kind in PRIVATE_TYPES
        ]
        return any_of(
            none_of(*(term(KIND, kind) for kind in PRIVATE_KINDS), *private_activities),
            own_campaigns,
            all_of(term(KIND, RESULT_KIND), term(CREATOR, me)),
            *(all_of(activity, term("actor_id", me)) for activity in private_activities),
        )
    clauses: list[Query] = []
    for team_id in sorted(teams):
        clauses.extend(
            all_of(term(KIND, kind), term("team_id", team_id)) for kind in TEAM_OWNED_KINDS
        )
        clauses.append(all_of(term(KIND, RESULT_KIND), term("team_id", team_id), term(CREATOR, me)))
        clauses.append(all_of(term(KIND, TEAM_KIND), term("id", team_id)))
    clauses.append(own_campaigns)
    clauses.append(term(KIND, LABEL_KIND))
    # a global policy's team_id is null, which only WILDCARD "*" matches
    clauses.append(all_of(term(KIND, POLICY_KIND), wildcard("team_id", "*")))
    return any_of(*clauses)


async def owner_scopes(users: UserService, user_ids: Collection[int]) -> dict[int, Query | None]:
    """Each existing user's `document_scope` now, by id (a deleted user is left out): the
    query task service's `owner_scopes` callback (`fleetwatch.query.task_scopes`)."""
    return {
        user_id: document_scope(Access(user))
        for user_id, user in (await users.some(user_ids)).items()
    }
