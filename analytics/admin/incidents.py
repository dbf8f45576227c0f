"""The operator's first screen: incidents, each with the evidence and raw anomalies behind it.

An incident's fields are read-only here; operators triage it with the bulk actions or the
buttons of its detail page, which call the incident lifecycle services (the same as the API),
so its member anomalies move with it and a closed incident is never reopened. Money is stored
in cents and shown in dollars.
"""

import math
from datetime import date

from django.contrib import admin
from django.db.models import QuerySet
from django.urls import reverse

from analytics.actors import user_actor
from analytics.admin.anomalies import NeedsAttentionFilter, TriagedObjectAdminMixin
from analytics.admin.charts import nice_step
from analytics.admin.display import cost_records_url, day_bounds, runs_url
from analytics.admin.triage import (
    BulkTriageActionsMixin,
    CloseLink,
    DetailTriageMixin,
    acknowledged_message,
    closed_message,
    labelled_message,
)
from analytics.models import AnomalyStatus, FeedbackLabel, Incident
from analytics.money import dollars
from analytics.selectors.incidents import IncidentDay, incident_daily_series
from analytics.services.incidents import (
    incident_acknowledge,
    incident_label,
    incident_resolve,
    incidents_acknowledge,
    incidents_label,
    incidents_resolve,
)

DAYS_BEFORE = 14
DAYS_AFTER = 7


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1f}%"


# --- Action bodies (tests call these directly) -------------------------------------------


def acknowledge_incidents(request, queryset: QuerySet[Incident]) -> tuple[dict, str]:
    """Acknowledge the open incidents and their anomalies; return the counts and a message."""
    counts = incidents_acknowledge(incidents=queryset, actor=user_actor(request))
    return counts, acknowledged_message(counts, "incident(s)")


def close_incidents(
    request, queryset: QuerySet[Incident], *, resolution: str, notes: str = ""
) -> tuple[dict, str]:
    """Resolve or dismiss the open/acknowledged incidents and their anomalies, with notes."""
    counts = incidents_resolve(
        incidents=queryset, actor=user_actor(request), resolution=resolution, notes=notes
    )
    return counts, closed_message(counts, "incident(s)", resolution)


def label_incidents(request, queryset: QuerySet[Incident], *, label: str) -> tuple[dict, str]:
    counts = incidents_label(incidents=queryset, actor=user_actor(request), label=label)
    return counts, labelled_message(counts, "incident(s)", label)


# --- The chart -----------------------------------------------------------------------------


# complexity: bars, the incident window, the expected line and ticks share the scales (y_of,
# centre); days before the incident read differently
def incident_chart(
    days: list[IncidentDay],
    started_on: date,
    last_seen_on: date,
    *,
    day_url=None,
    width: int = 680,
    height: int = 220,
) -> dict:
    """Geometry of the inline SVG chart: daily spend as bars, the expected spend as a line.

    The y axis runs from $0 to a round dollar amount above the largest value, with a labelled
    gridline per step; the incident's days are shaded. `day_url(day)`, when given, is where a
    click on a day's bar leads (the records behind it).
    """
    left, right, top, bottom = 64, 8, 12, 24
    plot_width, plot_height = width - left - right, height - top - bottom
    chart = {"width": width, "height": height, "left": left, "top": top, "bars": []}
    chart["y_label_x"] = left - 6
    if not days:
        return chart
    largest = max(max(d.actual_cents, d.expected_cents) for d in days)
    step = nice_step(max(largest, 4.0) / 4)  # cents; at least a cent per step
    ceiling = step * max(math.ceil(largest / step), 1)
    baseline = top + plot_height
    slot = plot_width / len(days)

    def y_of(cents: float) -> float:
        return round(baseline - cents / ceiling * plot_height, 1)

    def centre(index: int) -> float:
        return round(left + (index + 0.5) * slot, 1)

    for index, point in enumerate(days):
        before = point.day < started_on
        if before:
            hover = f"{point.day:%a %Y-%m-%d}: {dollars(point.actual_cents)}"
        else:
            hover = (
                f"{point.day:%a %Y-%m-%d}: {dollars(point.actual_cents)} spent, "
                f"{dollars(point.expected_cents)} expected"
            )
        chart["bars"].append(
            {
                "x": round(left + index * slot + 1, 1),
                "slot_x": round(left + index * slot, 1),
                "y": y_of(point.actual_cents),
                "width": round(max(slot - 2, 1), 1),
                "height": round(baseline - y_of(point.actual_cents), 1),
                "in_window": started_on <= point.day <= last_seen_on,
                "hover": hover,
                "url": day_url(point.day) if day_url else "",
            }
        )
    first_window = next(i for i, d in enumerate(days) if d.day >= started_on)
    last_window = max(i for i, d in enumerate(days) if d.day <= last_seen_on)
    points = [(centre(i), y_of(d.expected_cents)) for i, d in enumerate(days)]
    ticks = []
    value = 0.0
    while value <= ceiling + step / 2:
        ticks.append({"y": y_of(value), "label": dollars(value)})
        value += step
    chart.update(
        slot=round(slot, 1),
        plot_right=left + plot_width,
        baseline=baseline,
        plot_height=plot_height,
        window={
            "x": round(left + first_window * slot, 1),
            "width": round((last_window - first_window + 1) * slot, 1),
        },
        # Before the incident "expected" is what was spent; that stretch is drawn faintly and
        # joins the expectation proper on the first incident day.
        history_line=_polyline(points[: first_window + 1]),
        expected_line=_polyline(points[first_window:]),
        expected_points=[
            {"x": x, "y": y, "hover": f"{d.day:%Y-%m-%d}: {dollars(d.expected_cents)} expected"}
            for (x, y), d in zip(points[first_window:], days[first_window:], strict=True)
        ],
        ticks=ticks,
        day_labels=_day_labels(days, [first_window, last_window, 0, len(days) - 1], centre),
    )
    return chart


def _polyline(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in points)


def _day_labels(days: list[IncidentDay], indexes: list[int], centre, gap: float = 48) -> list:
    """Date labels of the x axis, in order of importance; one too close to another is left out."""
    placed: dict[int, float] = {}
    for index in indexes:
        x = centre(index)
        if all(abs(x - other) >= gap for other in placed.values()):
            placed[index] = x
    last = len(days) - 1
    return [
        {
            "x": x,
            "label": f"{days[i].day:%b} {days[i].day.day}",
            "anchor": "start" if i == 0 else "end" if i == last else "middle",
        }
        for i, x in sorted(placed.items())
    ]


# --- The incident console ------------------------------------------------------------------


def raw_anomalies_url(incident: Incident) -> str:
    return f"{reverse('admin:analytics_anomaly_changelist')}?incident={incident.pk}"


@admin.register(Incident)
class IncidentAdmin(
    TriagedObjectAdminMixin, BulkTriageActionsMixin, DetailTriageMixin, admin.ModelAdmin
):
    console_position = 0  # the first entry of the app: what operators start from
    bulk_acknowledge = staticmethod(acknowledge_incidents)
    bulk_close = staticmethod(close_incidents)
    bulk_label = staticmethod(label_incidents)
    bulk_count_noun = "incident(s)"
    bulk_notes_help_text = (
        "Stored as the resolution notes of every selected incident and of its anomalies "
        "(up to 2000 chars)."
    )
    bulk_close_description = (
        "These incidents and their anomalies will be marked {resolution}. Incidents that are "
        "already resolved or dismissed are left as they are."
    )
    close_links = (
        CloseLink("resolve", "Resolve…", AnomalyStatus.RESOLVED),
        CloseLink("dismiss", "Dismiss…", AnomalyStatus.DISMISSED),
    )
    label_buttons = (
        (FeedbackLabel.YES, "Real incident"),
        (FeedbackLabel.NO, "False alarm"),
        (FeedbackLabel.PLANNED_ACTIVITY, "Planned activity"),
    )
    notes_help_text = (
        "Stored as the resolution notes of this incident and of its anomalies (up to 2000 chars)."
    )
    list_display = (
        "severity_badge",
        "kind",
        "title",
        "tenant",
        "scope",
        "started_on",
        "last_seen_on",
        "impact",
        "status_badge",
    )
    list_display_links = ("title",)
    list_filter = (NeedsAttentionFilter, "status", "severity", "kind", "feedback_label", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("title",)
    date_hierarchy = "last_seen_on"
    # Newest first: the incident seen most recently, then the one opened last.
    ordering = ("-last_seen_on", "-opened_at", "-id")
    list_per_page = 50
    fieldsets = (
        (
            "Lifecycle",
            {
                "fields": (
                    ("tenant", "kind", "status"),
                    ("opened_at", "updated_at"),
                    ("acknowledged_at", "acknowledged_by"),
                    ("resolved_at", "resolved_by"),
                    "resolution_notes",
                    ("feedback_label", "feedback_at", "feedback_by"),
                    "budget",
                    "metadata_pretty",
                )
            },
        ),
    )
    readonly_fields = (
        "tenant",
        "kind",
        "status",
        "opened_at",
        "updated_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "resolved_by",
        "resolution_notes",
        "feedback_label",
        "feedback_at",
        "feedback_by",
        "budget",
        "metadata_pretty",
    )

    # --- list columns ---

    @admin.display(description="scope", ordering="entity_id")
    def scope(self, obj):
        return obj.scope_label

    @admin.display(description="impact", ordering="impact_cents")
    def impact(self, obj):
        return dollars(obj.impact_cents)

    # --- detail page ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        incident = self.get_object(request, object_id)
        extra_context = extra_context or {}
        if incident is not None:
            days = incident_daily_series(
                incident=incident, days_before=DAYS_BEFORE, days_after=DAYS_AFTER
            )
            members = incident.anomalies.defer("contributors").order_by("anomaly_date", "id")
            window_start, window_end = day_bounds(incident.started_on, incident.last_seen_on)
            scope_type = incident.entity_type if incident.entity_id is not None else None
            extra_context.update(
                incident=incident,
                numbers={
                    "expected": dollars(incident.expected_cents),
                    "actual": dollars(incident.actual_cents),
                    "impact": dollars(incident.impact_cents),
                    "impact_pct": percent(incident.impact_pct),
                },
                root_causes=[
                    {
                        "entity": _entity_label(row["entity_type"], row["entity_id"]),
                        "records_url": cost_records_url(
                            tenant_id=incident.tenant_id,
                            start=window_start,
                            end=window_end,
                            entity_type=row["entity_type"],
                            entity_id=row["entity_id"],
                        ),
                        "expected": dollars(row["expected_cents"]),
                        "actual": dollars(row["actual_cents"]),
                        "delta": dollars(row["delta_cents"]),
                        "share": f"{row['share'] * 100:.1f}%",
                    }
                    for row in incident.root_causes
                ],
                days=[
                    {
                        "day": d.day,
                        "actual": dollars(d.actual_cents),
                        "expected": dollars(d.expected_cents)
                        if d.day >= incident.started_on
                        else "",
                        "in_window": incident.started_on <= d.day <= incident.last_seen_on,
                    }
                    for d in days
                ],
                chart=incident_chart(
                    days,
                    incident.started_on,
                    incident.last_seen_on,
                    day_url=lambda day: cost_records_url(
                        tenant_id=incident.tenant_id,
                        start=day_bounds(day, day)[0],
                        end=day_bounds(day, day)[1],
                        entity_type=scope_type,
                        entity_id=incident.entity_id,
                    ),
                ),
                records_url=cost_records_url(
                    tenant_id=incident.tenant_id,
                    start=window_start,
                    end=window_end,
                    entity_type=scope_type,
                    entity_id=incident.entity_id,
                ),
                runs_url=runs_url(tenant_id=incident.tenant_id, start=window_start, end=window_end),
                members=[
                    {
                        "anomaly": anomaly,
                        "url": reverse("admin:analytics_anomaly_change", args=[anomaly.pk]),
                    }
                    for anomaly in members
                ],
                raw_anomalies_url=raw_anomalies_url(incident),
                feedback=dict(self.label_buttons).get(incident.feedback_label, ""),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def triage_acknowledge(self, obj, *, actor):
        return incident_acknowledge(incident=obj, actor=actor)

    def triage_resolve(self, obj, *, actor, resolution, notes):
        return incident_resolve(incident=obj, actor=actor, resolution=resolution, notes=notes)

    def triage_label(self, obj, *, actor, label):
        return incident_label(incident=obj, actor=actor, label=label)

    def triage_description(self, obj) -> str:
        return obj.title


def _entity_label(entity_type: str, entity_id: str | None) -> str:
    return entity_type if entity_id is None else f"{entity_type}: {entity_id}"
