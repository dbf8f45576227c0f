"""Notification Prometheus metrics. The outbox service records them; the queue depth is
read from the database at scrape time (`notifications.collectors`).

Counters whose labels form a closed set are created at zero on import, so `increase()`
sees the first event of a process.
"""

from itertools import product

from prometheus_client import Counter, Histogram

from notifications.models import ChannelKind

KINDS = tuple(ChannelKind.values)
OUTCOMES = ("sent", "retried", "failed", "skipped")

# One per attempt: `sent` (accepted), `retried` (failed, another attempt is scheduled),
# `failed` (failed for good, or the channel was disabled), `skipped` (nowhere to send).
attempts_total = Counter(
    "notifications_delivery_attempts",
    "Delivery attempts by channel kind and outcome",
    ["kind", "outcome"],
)
errors_total = Counter(
    "notifications_delivery_errors",
    "Failed delivery attempts by channel kind and cause (timeout, connection, tls, "
    "unsafe_url, email, http_<status>)",
    ["kind", "error_type"],
)
# From the event (a detection run's commit, a breaker trip) to the accepted attempt.
latency_seconds = Histogram(
    "notifications_delivery_latency_seconds",
    "Seconds from the event to its accepted delivery",
    ["kind"],
    buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120, 300, 900, 3600),
)
send_seconds = Histogram(
    "notifications_send_duration_seconds",
    "Seconds one attempt took (HTTP POST or SMTP)",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

for _kind, _outcome in product(KINDS, OUTCOMES):
    attempts_total.labels(kind=_kind, outcome=_outcome)
for _kind, _error in product(KINDS, ("timeout", "connection")):
    errors_total.labels(kind=_kind, error_type=_error)
