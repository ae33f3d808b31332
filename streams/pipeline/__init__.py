"""What moves work along: poller → outbox relay → Kafka → agents → stages.

``poller`` claims new emails and starts their workflows; ``relay`` publishes
outbox rows; ``agents`` are the faust agents, short recipes over ``consumer``
(the message loop: decode, wait out a database outage, dead-letter) and
``batching``; ``generation`` keeps the AI Reply Generator's calls in flight;
``housekeeping`` is the sweep driven from the database; ``progress`` what
each agent last finished, for ``/health``.
"""
