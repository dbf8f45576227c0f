from datetime import timedelta

from django.db import models
from django.db.models import Q

from analytics.models.choices import EntityType, SnapshotStatus, SnapshotType
from analytics.models.tenancy import Tenant


class CostSnapshot(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    snapshot_type = models.CharField(max_length=8, choices=SnapshotType.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    status = models.CharField(
        max_length=12, choices=SnapshotStatus.choices, default=SnapshotStatus.COMPUTING
    )
    version = models.IntegerField(default=1)
    records_processed = models.BigIntegerField(default=0)
    computation_ms = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    is_stale = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "snapshot_type", "period_start"], name="snapshot_natural_key"
            ),
        ]
        indexes = [
            # ingest marks covering complete snapshots stale; statistics read complete ones
            models.Index(
                fields=["tenant", "period_start"],
                condition=Q(status=SnapshotStatus.COMPLETE),
                name="snapshot_complete_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.snapshot_type} snapshot {self.period_start:%Y-%m-%d %H:%M} ({self.status})"

    @staticmethod
    def period_length(snapshot_type: str) -> timedelta:
        return timedelta(hours=1) if snapshot_type == SnapshotType.HOURLY else timedelta(days=1)


class SnapshotAggregate(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    snapshot = models.ForeignKey(CostSnapshot, on_delete=models.CASCADE, related_name="aggregates")
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    # Sized for the largest sum a period can reach: fewer than 2**63 cost records (their id
    # is a bigint), each at its column's maximum (numeric(18,6) cost, bigint tokens). That
    # needs 31 integer digits for money and 38 for tokens, so no data a record can hold
    # overflows a snapshot. request_count is a count of those records and fits a bigint.
    total_cost_cents = models.DecimalField(max_digits=38, decimal_places=6)
    request_count = models.BigIntegerField()
    # Records of the period stored without a cost (unknown model); total_cost_cents counts
    # them as 0, so a non-zero count says the total is a lower bound.
    unpriced_records = models.BigIntegerField(default=0, db_default=0)
    total_input_tokens = models.DecimalField(max_digits=38, decimal_places=0)
    total_output_tokens = models.DecimalField(max_digits=38, decimal_places=0)
    avg_cost_per_request_cents = models.FloatField()
    avg_tokens_per_request = models.FloatField()
    baseline_7d_avg_cents = models.FloatField(null=True, blank=True)
    baseline_30d_avg_cents = models.FloatField(null=True, blank=True)
    deviation_from_7d_pct = models.FloatField(null=True, blank=True)
    deviation_from_30d_pct = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["snapshot", "entity_type", "entity_id"],
                nulls_distinct=False,
                name="aggregate_natural_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.entity_type}:{self.entity_id or '-'} {self.total_cost_cents}¢"


class Baseline(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    entity_type = models.CharField(max_length=8, choices=EntityType.choices)
    entity_id = models.CharField(max_length=128, null=True, blank=True)
    window_days = models.SmallIntegerField(choices=[(7, "7 days"), (30, "30 days")])
    as_of = models.DateField()
    avg_daily_cost_cents = models.FloatField()
    stddev_daily_cost_cents = models.FloatField(null=True, blank=True)
    avg_daily_requests = models.FloatField()
    max_daily_cost_cents = models.FloatField()
    min_daily_cost_cents = models.FloatField()
    samples_count = models.IntegerField()
    last_snapshot = models.ForeignKey(
        CostSnapshot, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    computed_at = models.DateTimeField()
    valid_until = models.DateTimeField()
    is_current = models.BooleanField(default=True)

    class Meta:
        ordering = ["-as_of", "entity_type", "entity_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "entity_type", "entity_id", "window_days", "as_of"],
                nulls_distinct=False,
                name="baseline_natural_key",
            ),
            # One current row per entity and window.
            models.UniqueConstraint(
                fields=["tenant", "entity_type", "entity_id", "window_days"],
                condition=Q(is_current=True),
                nulls_distinct=False,
                name="baseline_one_current",
            ),
        ]
        indexes = [
            # daily snapshots read the baselines of one as_of; baseline_compute finds the
            # latest as_of of a window and moves is_current
            models.Index(fields=["tenant", "window_days", "as_of"], name="baseline_window_asof"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.window_days}d baseline {self.entity_type}:{self.entity_id or '-'} {self.as_of}"
        )
