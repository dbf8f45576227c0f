from django.conf import settings
from django.db import models
from django.utils import timezone

from analytics.hashing import random_hex12
from analytics.models import Tenant

BREAKER_NAME = "costsim_v2"


class Variant(models.TextChoices):
    V1 = "v1", "V1 (production)"
    V2 = "v2", "V2 (candidate)"


class ProvenanceSource(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox"
    API = "api", "API"
    BACKFILL = "backfill", "Backfill"


class Verdict(models.TextChoices):
    MATCH = "match", "Match"
    MINOR_DRIFT = "minor_drift", "Minor drift"
    MAJOR_DRIFT = "major_drift", "Major drift"
    MISMATCH = "mismatch", "Mismatch"


class Provenance(models.Model):
    """Append-only record of one V2 comparison or one backfilled V1 estimate.

    Rows are created only by costsim.services.provenance and deleted only by the retention prune.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+", editable=False)
    run_id = models.CharField(max_length=64, null=True, blank=True, editable=False)
    variant_slug = models.CharField(max_length=4, choices=Variant.choices, editable=False)
    source = models.CharField(max_length=12, choices=ProvenanceSource.choices, editable=False)
    model_version = models.CharField(max_length=32, editable=False)
    adapter_version = models.CharField(max_length=32, editable=False)
    commit_sha = models.CharField(max_length=12, editable=False)
    input_json = models.JSONField(default=dict, editable=False)
    input_hash = models.CharField(max_length=16, editable=False)
    output_json = models.JSONField(null=True, blank=True, editable=False)
    output_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    v1_cost = models.IntegerField(null=True, blank=True, editable=False)
    v2_cost = models.IntegerField(null=True, blank=True, editable=False)
    cost_delta = models.IntegerField(null=True, blank=True, editable=False)
    drift_score = models.FloatField(null=True, blank=True, editable=False)
    verdict = models.CharField(
        max_length=12, choices=Verdict.choices, null=True, blank=True, editable=False
    )
    v2_status = models.CharField(max_length=16, null=True, blank=True, editable=False)
    runtime_ms = models.IntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "provenance"
        indexes = [
            # tenant list and drift stats in a time window
            models.Index(fields=["tenant", "created_at"], name="prov_tenant_time"),
            # backfill duplicate check and the input_hash filter
            models.Index(fields=["tenant", "input_hash"], name="prov_tenant_hash"),
            # calibration: newest estimate per run
            models.Index(fields=["tenant", "run_id"], name="prov_tenant_run"),
            # canary sampling (recent v2 rows) and retention prune
            models.Index(fields=["variant_slug", "created_at"], name="prov_variant_time"),
            models.Index(fields=["source"], name="prov_source"),
        ]

    def __str__(self) -> str:
        return f"{self.variant_slug}/{self.source} {self.input_hash} {self.created_at:%Y-%m-%d}"


class IncidentSeverity(models.TextChoices):
    P1 = "P1", "P1"
    P2 = "P2", "P2"
    P3 = "P3", "P3"


class IncidentTrigger(models.TextChoices):
    DRIFT = "drift", "Drift"
    CANARY = "canary", "Canary"
    SCHEMA_ERROR = "schema_error", "Schema error"
    MANUAL = "manual", "Manual"


class BreakerIncident(models.Model):
    id = models.CharField(primary_key=True, max_length=12, default=random_hex12, editable=False)
    breaker_name = models.CharField(max_length=64, default=BREAKER_NAME)
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    severity = models.CharField(max_length=2, choices=IncidentSeverity.choices)
    trigger = models.CharField(max_length=16, choices=IncidentTrigger.choices)
    drift_score = models.FloatField(default=0.0)
    sample_count = models.IntegerField(default=0)
    details = models.JSONField(default=dict, blank=True)
    resolved = models.BooleanField(default=False)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True, default="")
    resolution_notes = models.TextField(blank=True, default="")
    alert_sent = models.BooleanField(default=False)
    alert_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["resolved", "-created_at"], name="incident_resolved_time")]

    def __str__(self) -> str:
        return f"{self.severity} {self.trigger} incident {self.id}"


class CircuitBreaker(models.Model):
    """State of one breaker (a single row, `costsim_v2`, created by migration)."""

    name = models.CharField(max_length=64, unique=True)
    disabled = models.BooleanField(default=False)
    opened_at = models.DateTimeField(null=True, blank=True)
    disabled_by = models.CharField(max_length=200, blank=True, default="")
    disabled_reason = models.TextField(blank=True, default="")
    disabled_until = models.DateTimeField(null=True, blank=True)
    incident = models.ForeignKey(
        BreakerIncident, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    consecutive_failures = models.IntegerField(default=0)
    consecutive_schema_errors = models.IntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "circuit breaker"

    def __str__(self) -> str:
        return f"{self.name} ({'open' if self.disabled else 'closed'})"


def _default_max_attempts() -> int:
    # Referenced by migration 0001 (the dropped alert outbox's default); kept so it loads.
    return settings.COSTSIM_ALERT_MAX_ATTEMPTS


class CanaryStatus(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"
    ERROR = "error", "Error"
    SKIPPED = "skipped", "Skipped"
    # Too few samples to judge V2: neither a pass nor a failure, the breaker is not told.
    INSUFFICIENT_DATA = "insufficient_data", "Insufficient data"


class CanaryReport(models.Model):
    run_id = models.CharField(max_length=12, unique=True)
    timestamp = models.DateTimeField()
    status = models.CharField(max_length=20, choices=CanaryStatus.choices)
    total_samples = models.IntegerField(default=0)
    # Samples that V1 and V2 both estimated (total_samples minus those that raised).
    evaluated_samples = models.IntegerField(default=0)
    # The floor the run was judged against (COSTSIM_MIN_DRIFT_SAMPLES); null on reports
    # written before the floor existed.
    min_samples = models.IntegerField(null=True, blank=True)
    matching_samples = models.IntegerField(default=0)
    minor_drift_samples = models.IntegerField(default=0)
    major_drift_samples = models.IntegerField(default=0)
    median_cost_diff = models.FloatField(default=0.0)
    p90_cost_diff = models.FloatField(default=0.0)
    # Null when fewer than min_samples were evaluated: a distance on so few is not computed.
    kl_divergence = models.FloatField(null=True, blank=True)
    js_distance = models.FloatField(null=True, blank=True)
    outlier_count = models.IntegerField(default=0)
    passed = models.BooleanField(default=False)
    failure_reasons = models.JSONField(default=list, blank=True)
    sample_source = models.CharField(max_length=16, blank=True, default="")
    drift_threshold = models.FloatField()
    duration_ms = models.IntegerField(default=0)
    comparisons = models.JSONField(default=list, blank=True)
    diffs = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-timestamp", "-id"]
        indexes = [models.Index(fields=["status", "-timestamp"], name="canary_status_time")]

    def __str__(self) -> str:
        return f"canary {self.run_id} ({self.status})"
