"""The ingest layer: prediction and label events from Kafka into the store, one transaction a batch.

* :mod:`consumers.validation` - each event checked against its model's configuration
  (a ranking model's lists and labels: :mod:`consumers.ranking_validation`);
* :mod:`consumers.join` - labels joined to their predictions (pending both ways), counters;
* :mod:`consumers.ingest` - the batch transaction: decode, validate, join, analyse, offsets;
* :mod:`consumers.monitor` - the poll loop (``driftloop monitor``): partitions, commits, recovery.

May import: ``driftloop.kafka`` and ``driftloop.core`` (and, by one ignored edge in
``pyproject.toml``, ``detectors.ranking_lists``: the encoding of lists written once). The drift analysis above it is passed in
(``consumers.ingest.BatchAnalyser``, wired by ``driftloop.app.service``).
"""
