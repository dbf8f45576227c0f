"""Predictions Prometheus metrics; the cycle increments them after commit.

Closed label sets are created at import so every process exposes zeros from the start.
"""

from prometheus_client import Counter

from predictions.choices import PredictionType

predictions_emitted_total = Counter(
    "predictions_emitted", "Predictions written (inserted or updated)", ["prediction_type"]
)
predictions_emission_errors_total = Counter(
    "predictions_emission_errors", "Prediction emissions that failed", ["prediction_type"]
)

for _prediction_type in PredictionType.values:
    predictions_emitted_total.labels(prediction_type=_prediction_type)
    predictions_emission_errors_total.labels(prediction_type=_prediction_type)
