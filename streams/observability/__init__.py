"""What every layer reports through, importing nothing of its own:
``metrics`` (Prometheus), ``tracing`` (W3C trace context on every record),
``logs`` (plain or JSON lines). What ``/health`` answers is in
:mod:`streams.web.health`, which reads the pipeline."""
