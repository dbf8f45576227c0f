"""Analytics Prometheus metrics. Services increment them.

Closed label sets are created at import so every process exposes zeros from the start.
"""

from itertools import product

from prometheus_client import Counter, Histogram

cost_records_ingested_total = Counter(
    "analytics_cost_records_ingested", "Cost records of accepted batches", ["result"]
)
run_records_upserted_total = Counter(
    "analytics_run_records_upserted", "Run records of accepted batches", ["result"]
)
# Ingested records the service priced, by how; cost_source="unpriced" counts records stored
# without a cost because neither the catalogue nor the tenant's overrides know the model.
cost_records_priced_total = Counter(
    "analytics_cost_records_priced",
    "Ingested cost records without a client cost, by how they were priced",
    ["cost_source"],
)
ingest_batches_rejected_total = Counter(
    "analytics_ingest_batches_rejected", "Rejected ingest batches", ["kind", "reason"]
)
snapshots_computed_total = Counter(
    "analytics_snapshots_computed", "Snapshot computations", ["snapshot_type", "status"]
)
snapshot_computation_ms = Histogram(
    "analytics_snapshot_computation_ms",
    "Wall-clock time of completed snapshot computations",
    ["snapshot_type"],
    buckets=(10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000),
)
anomalies_created_total = Counter(
    "analytics_anomalies_created", "New anomaly rows", ["anomaly_type", "severity"]
)
incidents_opened_total = Counter(
    "analytics_incidents_opened", "Incidents opened by detection", ["kind", "severity"]
)
job_runs_total = Counter("analytics_job_runs", "Analytics job runs", ["job", "outcome"])

for _result in ("accepted", "duplicate"):
    cost_records_ingested_total.labels(result=_result)
for _source in ("catalog", "override", "unpriced"):
    cost_records_priced_total.labels(cost_source=_source)
for _result in ("created", "updated", "unchanged"):
    run_records_upserted_total.labels(result=_result)
for _kind, _reason in product(("cost_records", "runs"), ("validation", "too_large", "conflict")):
    ingest_batches_rejected_total.labels(kind=_kind, reason=_reason)
for _type, _status in product(("hourly", "daily"), ("complete", "failed")):
    snapshots_computed_total.labels(snapshot_type=_type, status=_status)
for _job, _outcome in product(
    ("hourly_snapshots", "daily_snapshots", "detect_anomalies", "snapshot_backfill"),
    ("success", "failed", "skipped"),
):
    job_runs_total.labels(job=_job, outcome=_outcome)
