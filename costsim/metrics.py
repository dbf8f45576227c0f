"""CostSim Prometheus metrics. Services increment them.

Counters whose labels form a closed set are created for every combination at import, so a
process that has recorded nothing yet still exposes zeros and `increase()` sees the first
event. State gauges are not here: they are computed from the database at scrape time.
"""

from itertools import product

from prometheus_client import Counter, Histogram

drift_score = Histogram(
    "costsim_v2_drift_score",
    "Drift score of V2 shadow and explicit comparisons",
    ["tenant"],
    buckets=(0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0),
)
cost_delta_cents = Histogram(
    "costsim_v2_cost_delta_cents",
    "Absolute V2 - V1 cost delta in cents",
    ["tenant"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
simulation_duration_ms = Histogram(
    "costsim_v2_simulation_duration_ms",
    "V2 runtime in milliseconds (outside the canary)",
    ["tenant"],
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
comparison_verdict_total = Counter(
    "costsim_v2_comparison_verdict", "Comparisons by verdict", ["tenant", "verdict"]
)
simulations_total = Counter("costsim_v2_simulations", "V2 runs by status", ["tenant", "status"])
schema_errors_total = Counter(
    "costsim_v2_schema_errors",
    "V2 runs that raised or returned schema_error",
    ["tenant", "error_type"],
)
provenance_logs_total = Counter(
    "costsim_v2_provenance_logs", "Provenance rows written", ["tenant", "source"]
)
canary_runs_total = Counter("costsim_v2_canary_runs", "Canary runs by status", ["status"])
cb_disabled_total = Counter("costsim_cb_disabled", "Circuit breaker trips", ["reason", "severity"])
cb_enabled_total = Counter("costsim_cb_enabled", "Circuit breaker closes", ["reason"])
cb_auto_recovery_total = Counter("costsim_cb_auto_recovery", "Circuit breaker auto-recoveries")
cb_incidents_total = Counter(
    "costsim_cb_incidents", "Breaker incidents created and resolved", ["severity", "resolved"]
)
cb_reports_while_open_total = Counter(
    "costsim_cb_reports_while_open", "Drift reports received while the breaker is open", ["source"]
)
job_runs_total = Counter("costsim_job_runs", "CostSim job runs", ["job", "outcome"])

for _status in ("pass", "fail", "error", "skipped", "insufficient_data"):
    canary_runs_total.labels(status=_status)
for _reason, _severity in product(
    ("drift", "canary", "schema_error", "manual"), ("P1", "P2", "P3")
):
    cb_disabled_total.labels(reason=_reason, severity=_severity)
for _reason in ("manual", "auto_recovery"):
    cb_enabled_total.labels(reason=_reason)
for _severity, _resolved in product(("P1", "P2", "P3"), ("false", "true")):
    cb_incidents_total.labels(severity=_severity, resolved=_resolved)
for _source in ("sandbox", "canary"):
    cb_reports_while_open_total.labels(source=_source)
for _job, _outcome in product(("canary", "provenance_prune"), ("success", "failed", "skipped")):
    job_runs_total.labels(job=_job, outcome=_outcome)
