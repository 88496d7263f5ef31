"""The Kafka layer: clients and the plumbing every consumer of the project shares.

Clients built from the configuration (``clients``), the poll loop and its retries (``polling``), the
stuck-call guard (``stuck_calls``), committed offsets kept in the store (``offsets``), dead letters
(``dead_letters``), lean record decoding (``lean_records``), topic creation (``topics``) and the
``Publisher`` SDK (``publisher``).

May import: ``driftloop.core``.
"""
