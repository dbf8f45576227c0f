from django.db import models
from django.db.models import Q

from analytics.models.choices import (
    AnomalyStatus,
    AnomalyType,
    BudgetPeriod,
    DerivedCause,
    EntityType,
    FeedbackLabel,
    Severity,
)
from analytics.models.records import Budget
from analytics.models.snapshots import CostSnapshot
from analytics.models.tenancy import Tenant


class AnomalyQuerySet(models.QuerySet):
    def unresolved(self):
        return self.filter(status__in=[AnomalyStatus.OPEN, AnomalyStatus.ACKNOWLEDGED])


class Anomaly(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    anomaly_type = models.CharField(max_length=24, choices=AnomalyType.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(
        max_length=12, choices=AnomalyStatus.choices, default=AnomalyStatus.OPEN
    )
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    anomaly_date = models.DateField()
    budget_period = models.CharField(
        max_length=8, choices=BudgetPeriod.choices, null=True, blank=True
    )
    current_value_cents = models.FloatField()
    expected_value_cents = models.FloatField()
    deviation_pct = models.FloatField(null=True, blank=True)
    threshold_pct = models.FloatField()
    message = models.TextField()
    derived_cause = models.CharField(
        max_length=16, choices=DerivedCause.choices, default=DerivedCause.UNKNOWN
    )
    breach_count = models.IntegerField(default=1)
    metadata = models.JSONField(default=dict, blank=True)
    contributors = models.JSONField(default=list, blank=True)
    snapshot = models.ForeignKey(
        CostSnapshot, on_delete=models.SET_NULL, null=True, blank=True, related_name="anomalies"
    )
    budget = models.ForeignKey(
        Budget, on_delete=models.SET_NULL, null=True, blank=True, related_name="anomalies"
    )
    # The incident this anomaly is evidence of; null while it explains nothing material.
    incident = models.ForeignKey(
        "analytics.Incident",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="anomalies",
    )
    detected_at = models.DateTimeField()
    last_detected_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True, default="")
    resolution_notes = models.TextField(blank=True, default="")
    feedback_label = models.CharField(
        max_length=16, choices=FeedbackLabel.choices, null=True, blank=True
    )
    feedback_at = models.DateTimeField(null=True, blank=True)
    feedback_by = models.CharField(max_length=200, blank=True, default="")

    objects = AnomalyQuerySet.as_manager()

    class Meta:
        ordering = ["-detected_at", "-id"]
        verbose_name_plural = "anomalies"
        constraints = [
            # Re-detection upserts on these natural keys (NULL entity ids and periods are equal).
            models.UniqueConstraint(
                fields=[
                    "tenant",
                    "anomaly_type",
                    "entity_type",
                    "entity_id",
                    "anomaly_date",
                    "budget_period",
                ],
                condition=~Q(anomaly_type=AnomalyType.SNAPSHOT_SPIKE),
                nulls_distinct=False,
                name="anomaly_daily_natural_key",
            ),
            models.UniqueConstraint(
                fields=["snapshot", "entity_type", "entity_id"],
                condition=Q(anomaly_type=AnomalyType.SNAPSHOT_SPIKE),
                nulls_distinct=False,
                name="anomaly_snapshot_natural_key",
            ),
        ]
        indexes = [
            # the anomaly list: newest first per tenant
            models.Index(fields=["tenant", "-detected_at"], name="anomaly_tenant_detected"),
            # the operator console: open/acknowledged anomalies
            models.Index(
                fields=["tenant", "status"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="anomaly_unresolved",
            ),
        ]

    def __str__(self) -> str:
        entity = f"{self.entity_type}:{self.entity_id or '-'}"
        return f"{self.get_anomaly_type_display()} {entity} {self.anomaly_date}"


class AnomalyEvaluation(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    snapshot = models.ForeignKey(CostSnapshot, on_delete=models.CASCADE, related_name="evaluations")
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    current_value_cents = models.FloatField()
    baseline_value_cents = models.FloatField()
    threshold_pct = models.FloatField()
    deviation_pct = models.FloatField()
    triggered = models.BooleanField()
    severity = models.CharField(max_length=8, choices=Severity.choices, null=True, blank=True)
    anomaly = models.ForeignKey(
        Anomaly, on_delete=models.SET_NULL, null=True, blank=True, related_name="evaluations"
    )
    reason = models.CharField(max_length=200)
    evaluated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "entity_type", "entity_id"],
                nulls_distinct=False,
                name="evaluation_natural_key",
            ),
        ]

    def __str__(self) -> str:
        return self.reason


class BreachHistory(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    breach_type = models.CharField(max_length=24, default=AnomalyType.ABSOLUTE_SPIKE)
    breach_date = models.DateField()
    deviation_pct = models.FloatField()
    current_value_cents = models.FloatField()
    baseline_value_cents = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "breach history"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "entity_type", "entity_id", "breach_type", "breach_date"],
                nulls_distinct=False,
                name="breach_natural_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.breach_type} {self.entity_type}:{self.entity_id or '-'} {self.breach_date}"


class DriftTracking(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    rolling_7d_avg_cents = models.FloatField(default=0)
    baseline_avg_cents = models.FloatField(default=0)
    drift_pct = models.FloatField(default=0)
    drift_days_count = models.IntegerField(default=0)
    first_drift_date = models.DateField(null=True, blank=True)
    last_check_date = models.DateField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "drift tracking"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "entity_type", "entity_id"],
                nulls_distinct=False,
                name="drift_natural_key",
            ),
        ]

    def __str__(self) -> str:
        return f"drift {self.entity_type}:{self.entity_id or '-'} ({self.drift_days_count} days)"
