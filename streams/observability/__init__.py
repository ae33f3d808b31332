"""How an operator sees the worker: ``health`` (/health and its checks),
``metrics`` (Prometheus), ``tracing`` (W3C trace context on every record),
``logs`` (plain or JSON lines)."""
