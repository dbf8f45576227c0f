"""Operator console for snapshots and baselines: derived data, so read-only apart from
the "recompute" action, which goes through the same service as the jobs and the API."""

from collections import Counter

from django.contrib import admin, messages

from analytics.admin.readonly import ReadOnlyAdminMixin
from analytics.models import Baseline, CostSnapshot, SnapshotAggregate
from analytics.services.snapshots import snapshot_compute


def snapshots_recompute(queryset) -> Counter:
    """Recompute the selected snapshots, oldest period first; return counts per final status.

    Oldest first because a daily snapshot reads the baselines of the days before it.
    """
    counts: Counter = Counter()
    for snapshot in queryset.select_related("tenant").order_by("period_start", "snapshot_type"):
        result = snapshot_compute(
            tenant=snapshot.tenant,
            snapshot_type=snapshot.snapshot_type,
            period_start=snapshot.period_start,
        )
        counts[result.status] += 1
    return counts


class SnapshotAggregateInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = SnapshotAggregate
    extra = 0
    fields = (
        "entity_type",
        "entity_id",
        "total_cost_cents",
        "request_count",
        "total_input_tokens",
        "total_output_tokens",
        "avg_cost_per_request_cents",
        "baseline_7d_avg_cents",
        "deviation_from_7d_pct",
        "baseline_30d_avg_cents",
        "deviation_from_30d_pct",
    )
    readonly_fields = fields
    ordering = ("entity_type", "entity_id")


@admin.register(CostSnapshot)
class CostSnapshotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "period_start",
        "snapshot_type",
        "tenant",
        "status",
        "version",
        "records_processed",
        "computation_ms",
        "is_stale",
        "completed_at",
    )
    list_filter = ("status", "snapshot_type", "is_stale", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug",)
    date_hierarchy = "period_start"
    ordering = ("-period_start", "-id")
    show_full_result_count = False
    readonly_fields = (
        "tenant",
        "snapshot_type",
        "period_start",
        "period_end",
        "status",
        "version",
        "records_processed",
        "computation_ms",
        "error_message",
        "is_stale",
        "created_at",
        "completed_at",
    )
    fields = readonly_fields
    inlines = [SnapshotAggregateInline]
    actions = ["recompute"]

    @admin.action(description="Recompute selected snapshots")
    def recompute(self, request, queryset):
        counts = snapshots_recompute(queryset)
        total = sum(counts.values())
        detail = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        level = messages.WARNING if counts.get("failed") else messages.SUCCESS
        self.message_user(request, f"{total} snapshot(s) recomputed: {detail}.", level)


@admin.register(Baseline)
class BaselineAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "as_of",
        "window_days",
        "tenant",
        "entity_type",
        "entity_id",
        "avg_daily_cost_cents",
        "stddev_daily_cost_cents",
        "samples_count",
        "is_current",
    )
    list_filter = ("window_days", "is_current", "entity_type", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("tenant__slug", "entity_id")
    date_hierarchy = "as_of"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]
