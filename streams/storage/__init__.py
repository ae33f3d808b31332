"""PostgreSQL, and the only place SQL lives (docs/database.md).

``repository`` is the entry: ``WorkflowRepository`` and its ``Transaction``,
made of one part per concern: ``transitions`` (compare-and-set state changes
with their audit rows), ``intake`` (claiming new emails), ``parking`` (peer
outages), ``sending`` (the send claim, presentations held by a live worker),
``phone`` (the one draft on the phone, the inbound-SMS ledger) and ``outbox``
(messages for Kafka, written in the same transaction; the relay's batches).
``reads`` are the read models of the API, dashboard and health. ``protocol``
is what the stages may rely on, as typing ``Protocol``s the in-memory fake of
the tests implements too; ``records`` the rows as typed values; ``database``
the pool and the schema; ``outages`` waiting out a database that is away.
"""
