"""The base layer: what every other layer shares.

The events' wire schema (``events``, JSON Schema files in ``schemas/``), the configuration and
every section's schema (``config``), the store (``store``) and every table (``tables``), the
transactional outbox (``outbox``), timestamps as text (``clock``), JSON helpers (``jsonio``),
logging (``logsetup``) and the old module paths of names written before the layers (``moved``).

May import: nothing of the project, with one exception: ``config`` checks each model's
``detectors:`` section against the detectors' own settings schema
(``detectors.model_monitor.MonitorSettings``; the detectors import nothing of the project, so
this cannot make a cycle; the one ``ignore_imports`` entry of pyproject's import-linter contract).
"""
