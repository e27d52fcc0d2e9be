"""User-facing HTTP routes, WebSocket and SSE, /healthz and /metrics: thin adapters over the
services. May import the services and everything below them; only `app.py` and `web/` import
it."""
