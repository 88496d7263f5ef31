"""The monitoring layer: runs the detectors over the joined data and records what they say.

Drift analysis of a batch (``analysis``), the switch of reference when the champion changes
(``champion_switch``) and the statistics-history writer (``history``).

May import: ``detectors``, ``consumers``, ``driftloop.kafka``, ``driftloop.core``.
"""
