"""The base layer: what every other layer shares.

The events' wire schema (``events``, JSON Schema files in ``schemas/``), the configuration and its
sections (``config``), the store (``store``) and every table in it, declared in one place
(``tables``), the transactional outbox (``outbox``), JSON helpers (``jsonio``) and logging
(``logsetup``).

May import: nothing of the project (only the standard library and third-party packages).
"""
