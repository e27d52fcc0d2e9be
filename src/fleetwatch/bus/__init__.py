"""Moving parts shared between requests: host wake-ups (and, in a cluster, Redis fan-out)."""
