"""The application layer: the composition root and the programs built on the layers below.

The service that wires the monitor, the alerts and the retraining together (``service``), the CLI
(``cli``), the demo (``demo``, ``demo_data``), replay of recorded events (``replay``), the report
(``report``), counts (``stats``) and the HTTP API and dashboard (``api``).

May import: every layer below (``retrain``, ``driftloop.alerts``, ``driftloop.monitoring``,
``detectors``, ``consumers``, ``driftloop.kafka``, ``driftloop.core``).
"""
