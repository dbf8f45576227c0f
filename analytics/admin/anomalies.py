"""The operator's main screen: anomalies to triage, with the evidence to triage them.

Every state change goes through the same lifecycle services as the API, so a status set
here obeys the same rules (a closed anomaly is never reopened) and records the operator as
`user:<username>`. Detection output (evaluations, breach history, drift tracking) is shown
read-only.
"""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.auth import get_permission_codename
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

from analytics.actors import user_actor
from analytics.admin.charts import ChartBucket, chart_svg, stacked_chart
from analytics.admin.display import (
    cost_records_url,
    day_bounds,
    json_table,
    money_column,
    runs_url,
)
from analytics.admin.readonly import ReadOnlyAdmin, ReadOnlyAdminMixin
from analytics.admin.triage import (
    BulkTriageActionsMixin,
    CloseLink,
    DetailTriageMixin,
    acknowledged_message,
    closed_message,
    labelled_message,
)
from analytics.models import (
    Anomaly,
    AnomalyEvaluation,
    AnomalyStatus,
    BreachHistory,
    DriftTracking,
    Incident,
    Severity,
)
from analytics.selectors.anomalies import anomaly_daily_series
from analytics.services.anomaly_lifecycle import (
    anomalies_acknowledge,
    anomalies_label,
    anomalies_resolve,
    anomaly_acknowledge,
    anomaly_resolve,
)
from analytics.services.overview import baseline_band, baselines_by_day

SERIES_DAYS = 14
BASELINE_SCOPES = ("tenant", "user", "feature", "model")  # entity types with baselines
SEVERITY_COLOURS = {
    Severity.LOW: "#5b8a72",
    Severity.MEDIUM: "#c99a2e",
    Severity.HIGH: "#d0632a",
    Severity.CRITICAL: "#b3261e",
}
STATUS_COLOURS = {
    AnomalyStatus.OPEN: "#b3261e",
    AnomalyStatus.ACKNOWLEDGED: "#c99a2e",
    AnomalyStatus.RESOLVED: "#5b8a72",
    AnomalyStatus.DISMISSED: "#777777",
}


# --- Action bodies (tests call these directly) -------------------------------------------


def acknowledge_anomalies(request, queryset: QuerySet[Anomaly]) -> tuple[dict, str]:
    """Acknowledge the open anomalies; return the service counts and a message for the user."""
    counts = anomalies_acknowledge(anomalies=queryset, actor=user_actor(request))
    return counts, acknowledged_message(counts, "anomaly(ies)")


def close_anomalies(
    request, queryset: QuerySet[Anomaly], *, resolution: str, notes: str = ""
) -> tuple[dict, str]:
    """Resolve or dismiss the open/acknowledged anomalies with the operator's notes."""
    counts = anomalies_resolve(
        anomalies=queryset, actor=user_actor(request), resolution=resolution, notes=notes
    )
    return counts, closed_message(counts, "anomaly(ies)", resolution)


def label_anomalies(request, queryset: QuerySet[Anomaly], *, label: str) -> tuple[dict, str]:
    counts = anomalies_label(anomalies=queryset, actor=user_actor(request), label=label)
    return counts, labelled_message(counts, "anomaly(ies)", label)


# --- Filters -----------------------------------------------------------------------------


class NeedsAttentionFilter(admin.SimpleListFilter):
    title = "attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("needs", "Needs attention (open or acknowledged)"), ("closed", "Closed")]

    def queryset(self, request, queryset):
        if self.value() == "needs":
            return queryset.unresolved()
        if self.value() == "closed":
            return queryset.exclude(status__in=[AnomalyStatus.OPEN, AnomalyStatus.ACKNOWLEDGED])
        return queryset


class IncidentFilter(admin.SimpleListFilter):
    """In an incident or not; `?incident=<id>` (the incident page's link) lists one's members."""

    title = "incident"
    parameter_name = "incident"

    def lookups(self, request, model_admin):
        choices = [("any", "In an incident"), ("none", "In no incident")]
        value = self.value()
        if value and value.isdigit():
            incident = Incident.objects.filter(pk=value).only("title").first()
            if incident is not None:
                choices.append((value, f"#{value}: {incident.title[:60]}"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value == "any":
            return queryset.filter(incident__isnull=False)
        if value == "none":
            return queryset.filter(incident__isnull=True)
        if value.isdigit():
            return queryset.filter(incident_id=int(value))
        raise IncorrectLookupParameters(f"Unknown incident filter {value!r}.")


# --- The anomaly console -----------------------------------------------------------------


def badge(text: str, colour: str):
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px;white-space:nowrap">{}</span>',
        colour,
        text,
    )


class TriagedObjectAdminMixin(ReadOnlyAdminMixin):
    """What the anomaly and incident consoles share besides triage.

    Operators who may change their objects triage them; severity and status are shown as
    coloured badges.
    """

    def has_triage_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj):
        return badge(obj.get_severity_display(), SEVERITY_COLOURS[obj.severity])

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj):
        return badge(obj.get_status_display(), STATUS_COLOURS[obj.status])

    @admin.display(description="metadata")
    def metadata_pretty(self, obj):
        return json_table(obj.metadata)


def anomaly_chart(anomaly: Anomaly, series: list, baselines: dict) -> dict:
    """The daily spend of the anomaly's scope as bars, the anomaly's day highlighted, with the
    scope's 7-day baseline of each day as the expected line and band; each day links to the
    cost records behind it."""
    if anomaly.entity_type in ("user", "feature", "model"):
        scope_type, scope_id = anomaly.entity_type, anomaly.entity_id
    else:
        scope_type, scope_id = None, None
    buckets = []
    for point in series:
        baseline = baselines.get(point.day)
        start, end = day_bounds(point.day, point.day)
        buckets.append(
            ChartBucket(
                start=point.day,
                label=f"{point.day:%a %Y-%m-%d} ({point.requests} requests)",
                segments=(("spend", point.cents),),
                total=point.cents,
                expected=baseline.avg_daily_cost_cents if baseline else None,
                band=baseline_band(baseline) if baseline else None,
                url=cost_records_url(
                    tenant_id=anomaly.tenant_id,
                    start=start,
                    end=end,
                    entity_type=scope_type,
                    entity_id=scope_id,
                ),
                highlight=point.day == anomaly.anomaly_date,
            )
        )
    chart = stacked_chart(buckets, keys=["spend"], width=760, height=220)
    chart["id"] = "anomaly-chart"
    chart["svg"] = chart_svg(
        chart,
        label="Daily cost of this anomaly's scope as bars, its day highlighted, the 7-day "
        "baseline as a dashed line and band",
    )
    return chart


@admin.register(Anomaly)
class AnomalyAdmin(
    TriagedObjectAdminMixin, BulkTriageActionsMixin, DetailTriageMixin, admin.ModelAdmin
):
    console_position = 1  # right after incidents: the raw evidence behind them
    bulk_acknowledge = staticmethod(acknowledge_anomalies)
    bulk_close = staticmethod(close_anomalies)
    bulk_label = staticmethod(label_anomalies)
    bulk_count_noun = "anomaly(ies)"
    bulk_close_description = (
        "These anomalies will be marked <strong>{resolution}</strong>. Anomalies that are "
        "already resolved or dismissed are left as they are."
    )
    close_links = (CloseLink("resolve", "Resolve or dismiss…"),)

    def bulk_item_label(self, obj: Anomaly) -> str:
        return f"{obj.tenant} · {obj} · {obj.get_status_display()} — {obj.message}"

    bulk_notes_help_text = (
        "Stored as the resolution notes of every selected anomaly (up to 2000 chars)."
    )
    notes_help_text = "Stored as the anomaly's resolution notes (up to 2000 chars)."
    list_display = (
        "detected_at",
        "tenant",
        "anomaly_type",
        "severity_badge",
        "status_badge",
        "entity",
        "anomaly_date",
        "deviation",
        "derived_cause",
        "feedback_label",
        "incident_link",
    )
    list_display_links = ("detected_at", "anomaly_type")
    list_filter = (
        NeedsAttentionFilter,
        IncidentFilter,
        "status",
        "severity",
        "anomaly_type",
        "entity_type",
        "derived_cause",
        "feedback_label",
        "tenant",
    )
    list_select_related = ("tenant",)
    search_fields = ("entity_id", "message", "tenant__slug")
    date_hierarchy = "detected_at"
    ordering = ("-detected_at", "-id")
    list_per_page = 50
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "message",
                    ("anomaly_type", "severity", "status"),
                    ("tenant", "entity_type", "entity_id"),
                    ("anomaly_date", "budget_period"),
                )
            },
        ),
        (
            "Measurement",
            {
                "fields": (
                    ("current_value", "expected_value"),
                    ("deviation", "threshold_pct"),
                    ("breach_count", "derived_cause"),
                    ("snapshot", "budget"),
                    "incident_link",
                    "metadata_pretty",
                )
            },
        ),
        (
            "Lifecycle",
            {
                "fields": (
                    ("detected_at", "last_detected_at"),
                    ("acknowledged_at", "acknowledged_by"),
                    ("resolved_at", "resolved_by"),
                    "resolution_notes",
                    ("feedback_label", "feedback_at", "feedback_by"),
                )
            },
        ),
    )
    readonly_fields = (
        "message",
        "anomaly_type",
        "severity",
        "status",
        "tenant",
        "entity_type",
        "entity_id",
        "anomaly_date",
        "budget_period",
        "current_value",
        "expected_value",
        "deviation",
        "threshold_pct",
        "breach_count",
        "derived_cause",
        "snapshot",
        "budget",
        "incident_link",
        "metadata_pretty",
        "detected_at",
        "last_detected_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "resolution_notes",
        "feedback_label",
        "feedback_at",
        "feedback_by",
    )

    current_value = money_column("current_value_cents", "actual")
    expected_value = money_column("expected_value_cents", "expected")

    # --- list columns ---

    @admin.display(description="entity", ordering="entity_id")
    def entity(self, obj):
        return obj.entity_type if obj.entity_id is None else f"{obj.entity_type}: {obj.entity_id}"

    @admin.display(description="deviation", ordering="deviation_pct")
    def deviation(self, obj):
        return "—" if obj.deviation_pct is None else f"{obj.deviation_pct:+.1f}%"

    @admin.display(description="incident", ordering="incident_id")
    def incident_link(self, obj):
        if obj.incident_id is None:
            return "—"
        url = reverse("admin:analytics_incident_change", args=[obj.incident_id])
        return format_html('<a href="{}">#{}</a>', url, obj.incident_id)

    # --- detail page ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        anomaly = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if anomaly is not None:
            series = anomaly_daily_series(
                anomaly=anomaly, days_before=SERIES_DAYS, days_after=SERIES_DAYS
            )
            entity_type = anomaly.entity_type
            baselines = baselines_by_day(
                tenant=anomaly.tenant,
                days=[point.day for point in series],
                entity_type=entity_type if entity_type in BASELINE_SCOPES else "tenant",
                entity_id=anomaly.entity_id if entity_type in BASELINE_SCOPES else None,
            )
            start, end = day_bounds(anomaly.anomaly_date, anomaly.anomaly_date)
            extra_context.update(
                anomaly=anomaly,
                series=series,
                chart=anomaly_chart(anomaly, series, baselines),
                contributors=[
                    {
                        **row,
                        "share_pct": row["share"] * 100,
                        "url": cost_records_url(
                            tenant_id=anomaly.tenant_id,
                            start=start,
                            end=end,
                            entity_type=row.get("dimension"),
                            entity_id=row.get("key"),
                        ),
                    }
                    for row in anomaly.contributors
                ],
                difference=anomaly.current_value_cents - anomaly.expected_value_cents,
                day_records_url=cost_records_url(
                    tenant_id=anomaly.tenant_id,
                    start=start,
                    end=end,
                    entity_type=entity_type,
                    entity_id=anomaly.entity_id,
                ),
                day_runs_url=runs_url(tenant_id=anomaly.tenant_id, start=start, end=end),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def triage_acknowledge(self, obj, *, actor):
        return anomaly_acknowledge(anomaly=obj, actor=actor)

    def triage_resolve(self, obj, *, actor, resolution, notes):
        return anomaly_resolve(anomaly=obj, actor=actor, resolution=resolution, notes=notes)

    def triage_description(self, obj) -> str:
        return obj.message


# --- Read-only detection output ----------------------------------------------------------


@admin.register(AnomalyEvaluation)
class AnomalyEvaluationAdmin(ReadOnlyAdmin):
    list_display = (
        "evaluated_at",
        "tenant",
        "snapshot",
        "entity_type",
        "entity_id",
        "current_value",
        "baseline_value",
        "deviation_pct",
        "triggered",
        "severity",
        "anomaly",
    )
    list_filter = ("triggered", "severity", "entity_type", "tenant")
    list_select_related = ("tenant", "snapshot", "anomaly")
    search_fields = ("entity_id", "tenant__slug", "reason")
    date_hierarchy = "evaluated_at"
    ordering = ("-evaluated_at", "-id")

    current_value = money_column("current_value_cents", "actual")
    baseline_value = money_column("baseline_value_cents", "baseline")


@admin.register(BreachHistory)
class BreachHistoryAdmin(ReadOnlyAdmin):
    list_display = (
        "breach_date",
        "tenant",
        "entity_type",
        "entity_id",
        "breach_type",
        "deviation_pct",
        "current_value",
        "baseline_value",
        "updated_at",
    )
    list_filter = ("breach_type", "entity_type", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("entity_id", "tenant__slug")
    date_hierarchy = "breach_date"
    ordering = ("-breach_date", "-id")

    current_value = money_column("current_value_cents", "actual")
    baseline_value = money_column("baseline_value_cents", "baseline")


@admin.register(DriftTracking)
class DriftTrackingAdmin(ReadOnlyAdmin):
    list_display = (
        "tenant",
        "entity_type",
        "entity_id",
        "is_active",
        "drift_days_count",
        "drift_pct",
        "rolling_7d_avg",
        "baseline_avg",
        "first_drift_date",
        "last_check_date",
    )
    list_filter = ("is_active", "entity_type", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("entity_id", "tenant__slug")
    ordering = ("tenant", "entity_type", "entity_id")

    rolling_7d_avg = money_column("rolling_7d_avg_cents", "7-day average")
    baseline_avg = money_column("baseline_avg_cents", "baseline average")
