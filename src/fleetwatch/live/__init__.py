"""Live query campaigns (targets to host set, dispatch, result ingest, totals, completion),
their streams, saved queries, and what a user's tasks may see (`scope`). May import fleet/ and
everything below it; not the adapters."""
