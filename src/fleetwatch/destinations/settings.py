"""One named destination's settings: a `[destinations.NAME]` table of the settings file.

```toml
[destinations.siem]
type = "splunk_hec"                       # http | splunk_hec | elasticsearch | file
url = "https://splunk.example.com:8088/services/collector/event"
token = "..."                             # HEC token, Elasticsearch API key, bearer token
index = "osquery"                         # HEC index / Elasticsearch index
batch_size = 500                          # events per request at most
interval = 1.0                            # seconds a batch waits to fill before it is sent
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The kinds of destination.
TYPES = ("http", "splunk_hec", "elasticsearch", "file")
#: osquery log types a destination may also receive (`osquery_logs`).
LOG_TYPES = ("result", "status", "policy")
#: A destination name: what a campaign's `destinations` lists.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"


class DestinationSettings(BaseModel):
    """Where and how one destination delivers events (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: http (NDJSON lines POSTed), splunk_hec (HEC event JSON), elasticsearch (bulk API
    #: NDJSON with a deterministic `_id`), file (JSON lines, rotated).
    type: Literal["http", "splunk_hec", "elasticsearch", "file"]
    #: Where to POST (http, splunk_hec: the collector endpoint; elasticsearch: the cluster
    #: URL, `/_bulk` is appended).
    url: str | None = Field(None, pattern=r"^https?://")
    #: The file of a `file` destination (rotated past max_bytes).
    path: Path | None = None
    #: Sent as `Authorization: Splunk <token>` (HEC), `ApiKey <token>` (Elasticsearch) or
    #: `Bearer <token>` (http).
    token: str | None = None
    #: Splunk index (optional) or Elasticsearch index (required).
    index: str | None = None
    #: Events per request (or file write) at most.
    batch_size: int = Field(500, ge=1, le=100_000)
    #: Seconds a batch waits for more events before it is sent anyway (campaign rows: the
    #: change log is read again after this, 1 s at least, while there is nothing more).
    interval: float = Field(1.0, gt=0, le=3600)
    #: Longest wait between two tries of a batch that failed (seconds; the wait doubles
    #: from half a second up to this while the destination stays down).
    retry_max: float = Field(30.0, gt=0, le=3600)
    #: Time allowed for one request (seconds); longer counts as a failed try.
    timeout: float = Field(10.0, gt=0, le=600)
    #: Events queued at most; more are dropped, and counted (`dropped`).
    queue_limit: int = Field(100_000, ge=1)
    #: Seconds an undelivered event is retried (with backoff) before it is dropped, counted.
    retention: float = Field(3600.0, gt=0)
    #: Size at which a `file` destination's file is rotated (bytes).
    max_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    #: Rotated files a `file` destination keeps.
    backups: int = Field(5, ge=0, le=1000)
    #: osquery log types this destination also receives (log forwarding).
    osquery_logs: tuple[Literal["result", "status", "policy"], ...] = ()

    @model_validator(mode="after")
    def _complete(self) -> DestinationSettings:
        if self.type == "file":
            if self.path is None:
                raise ValueError('a "file" destination needs path = "/where/events.log"')
        elif self.url is None:
            raise ValueError(f'a "{self.type}" destination needs url = "https://..."')
        if self.type == "elasticsearch" and not self.index:
            raise ValueError('an "elasticsearch" destination needs index = "name"')
        return self
