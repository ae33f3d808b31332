"""The orchestrator's Kafka side and its adapters, one package per role.

Where a behaviour lives (docs/design.md walks one email through them):

- ``pipeline``: what moves work along: the poller (new emails into the
  outbox), the outbox relay (outbox rows onto Kafka), the faust agents and the
  message loop they share, the generation pool, the housekeeping sweep.
- ``stages``: what happens at each step (draft, notify, command, send, the
  failures and parking), decided through ``handlers`` and done through ports;
  no Kafka, HTTP or SQL library in it.
- ``storage``: PostgreSQL, and the only place SQL lives: transitions, the phone
  slot, the SMS ledger, parking, sends, intake, the outbox, the read models.
- ``kafka``: reaching the cluster (security settings) and its topics.
- ``peers``: the AI Reply Generator, the SMS Gateway, SMTP and IMAP.
- ``web``: the aiohttp views: the SMS webhook, the management API, its
  OpenAPI document, ``/health``, the dashboard.
- ``observability``: metrics, trace context, log lines (every layer reports
  through them; they import nothing of ``streams``).
- ``cli``: ``orchestrator`` and its operator commands.
- The wiring, at the top: ``settings`` (the environment, checked at start),
  ``runtime`` (everything a worker holds), ``app`` (the faust application),
  ``worker`` (the process).
"""
