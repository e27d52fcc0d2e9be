"""Operations: metrics, structured logs, the request middleware, OpenAPI description."""
