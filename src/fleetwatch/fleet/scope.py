"""What a team user's continuous queries may see, as a scope query (`fleetwatch.query.scope`).

A user with a global role sees the whole index (no scope). A team-only user's query tasks
are restricted to:

- `fleet:host` documents whose `team_id` is one of the user's teams;
- `fleet:result` and `fleet:log` documents of those teams' hosts (each carries the team its
  host was in when it was written: a host moved to another team leaves its earlier answers
  behind);
- `fleet:campaign` documents the user started;
- `fleet:label` documents (labels are global);
- `fleet:team` documents of the user's teams.

Nothing else (activities, user `/docs` collections, query internals) is visible.
"""

from __future__ import annotations

from fleetwatch.fleet.authz import Access
from fleetwatch.fleet.hosts import HOST_KIND
from fleetwatch.fleet.labels import LABEL_KIND
from fleetwatch.fleet.result_logs import LOG_KIND
from fleetwatch.fleet.teams import TEAM_KIND
from fleetwatch.live.campaigns import CAMPAIGN_KIND, RESULT_KIND
from fleetwatch.query.scope import all_of, any_of, term
from fleetwatch.query.spec import Query

KIND = "documentKind"
#: Kinds whose documents belong to a host's team through their `team_id` field.
TEAM_OWNED_KINDS = (HOST_KIND, RESULT_KIND, LOG_KIND)


def document_scope(access: Access) -> Query | None:
    """The scope of the user's query tasks; None for a global role (everything)."""
    teams = access.visible_teams()
    if teams is None:
        return None
    clauses: list[Query] = []
    for team_id in sorted(teams):
        clauses.extend(
            all_of(term(KIND, kind), term("team_id", team_id)) for kind in TEAM_OWNED_KINDS
        )
        clauses.append(all_of(term(KIND, TEAM_KIND), term("id", team_id)))
    clauses.append(all_of(term(KIND, CAMPAIGN_KIND), term("user_id", access.user.id)))
    clauses.append(term(KIND, LABEL_KIND))
    return any_of(*clauses)
