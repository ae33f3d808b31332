"""Reaching the Kafka cluster (``access``: plaintext, SASL, TLS, one place for
each client's configuration) and the topics the worker uses (``topics``)."""
