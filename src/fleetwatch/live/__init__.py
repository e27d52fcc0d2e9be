"""Live query campaigns: targets to host set, dispatch, result ingest, totals, completion."""
