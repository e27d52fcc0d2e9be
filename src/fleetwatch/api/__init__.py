"""User-facing HTTP routes, WebSocket and SSE: thin adapters over the services."""
