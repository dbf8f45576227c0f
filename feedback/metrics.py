"""Feedback Prometheus metrics; services increment them after commit.

Closed label sets are created at import so every process exposes zeros from the start.
"""

from itertools import product

from prometheus_client import Counter

from feedback.choices import PatternType

patterns_total = Counter(
    "feedback_patterns", "Pattern feedback rows upserted by detection", ["pattern_type", "result"]
)

for _pattern_type, _result in product(PatternType.values, ("created", "updated")):
    patterns_total.labels(pattern_type=_pattern_type, result=_result)
