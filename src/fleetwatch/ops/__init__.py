"""Operations: metrics, structured logs, the request middleware, the OpenAPI description, the
metrics port. May import destinations/, outbound/, dispatch/ (types) and `config`; it is
handed what its gauges observe (`fleetwatch.instrument` connects it to the services)."""
