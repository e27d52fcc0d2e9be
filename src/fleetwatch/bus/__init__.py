"""Between requests and nodes: host wake-ups, the local or Redis bus (broadcasts, leases,
invalidations) and the change log's fan-out. May import index/, storage/ and `periodic`."""
