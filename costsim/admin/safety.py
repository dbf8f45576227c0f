"""The safety net in the operator console: breaker, incidents, canary reports.

Breaker alerts are deliveries of the notifications outbox; their list, retry and purge are
on the notifications delivery admin, and the breaker and incident pages link there.

Every change goes through the same services as the API. Actions that need input (a reason,
a TTL, notes) show an intermediate form, as Django's own "delete selected" confirmation
does; their bodies are the module-level helpers below, which tests call directly.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from analytics.actors import user_actor
from analytics.admin.actions import action_form
from analytics.admin.readonly import ReadOnlyAdminMixin
from costsim.models import BreakerIncident, CanaryReport, CircuitBreaker
from costsim.services.breaker import (
    breaker_disable,
    breaker_enable,
    breaker_is_open,
    incident_resolve,
)
from notifications.selectors import breaker_deliveries

AUDIT_TRAIL_ROWS = 20


# Action bodies ------------------------------------------------------------------------


def disable_breaker(*, actor: str, reason: str, ttl_hours: float | None) -> str:
    """Open the breaker by hand; return the message shown to the operator."""
    breaker = breaker_disable(reason=reason, actor=actor, ttl_hours=ttl_hours)
    until = breaker.disabled_until
    return "V2 disabled" + (f" until {until:%Y-%m-%d %H:%M} UTC." if until else " until enabled.")


def enable_breaker(*, actor: str, reason: str) -> str:
    """Close the breaker by hand; return the message shown to the operator."""
    result = breaker_enable(reason=reason, actor=actor)
    return (
        "V2 re-enabled." if result.changed else "The breaker was already closed; nothing changed."
    )


def resolve_incidents(*, actor: str, incident_ids: list[str], notes: str) -> tuple[int, int]:
    """Resolve the given incidents; return (resolved, left alone)."""
    resolved = incident_resolve(incident_ids=incident_ids, actor=actor, notes=notes)
    return resolved, len(incident_ids) - resolved


# Forms --------------------------------------------------------------------------------


class DisableForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))
    ttl_hours = forms.FloatField(
        required=False,
        min_value=0.01,
        max_value=720,
        label="TTL (hours)",
        help_text="Optional. Without a TTL, V2 stays off until someone enables it.",
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


class NotesForm(forms.Form):
    notes = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


def _pretty_json(value) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def _admin_link(obj, label=None) -> str:
    if obj is None:
        return "-"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or obj.pk)


class _OperatorAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only pages whose only writes are actions, allowed to users with change rights."""

    def has_operate_permission(self, request) -> bool:
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


# Circuit breaker ----------------------------------------------------------------------


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(_OperatorAdmin):
    list_display = (
        "name",
        "state",
        "disabled_reason",
        "disabled_by",
        "opened_at",
        "disabled_until",
        "consecutive_failures",
        "consecutive_schema_errors",
        "current_incident",
    )
    list_select_related = ("incident",)
    actions = ("disable_v2", "enable_v2")
    fieldsets = (
        (
            "State",
            {
                "fields": (
                    "name",
                    "state",
                    ("opened_at", "disabled_until"),
                    ("disabled_by", "disabled_reason"),
                    "current_incident",
                    ("consecutive_failures", "consecutive_schema_errors", "last_failure_at"),
                    "updated_at",
                )
            },
        ),
        ("Audit trail", {"fields": ("recent_incidents", "recent_alerts")}),
    )
    readonly_fields = (
        "name",
        "state",
        "opened_at",
        "disabled_until",
        "disabled_by",
        "disabled_reason",
        "current_incident",
        "consecutive_failures",
        "consecutive_schema_errors",
        "last_failure_at",
        "updated_at",
        "recent_incidents",
        "recent_alerts",
    )

    @admin.display(description="state")
    def state(self, breaker: CircuitBreaker) -> str:
        if not breaker.disabled:
            color, label, note = "#2e7d32", "closed", "V2 running"
        elif not breaker_is_open(breaker):
            # Read-only: the page does not close the breaker, the next check does.
            color, label, note = "#ef6c00", "open, TTL expired", "closes on the next check"
        else:
            color, label, note = "#c62828", "OPEN", "V2 disabled"
        return format_html('<strong style="color: {}">{}</strong> ({})', color, label, note)

    @admin.display(description="current incident")
    def current_incident(self, breaker: CircuitBreaker) -> str:
        incident = breaker.incident
        return _admin_link(incident, str(incident)) if incident else "-"

    @admin.display(description="incidents (newest first)")
    def recent_incidents(self, breaker: CircuitBreaker) -> str:
        incidents = BreakerIncident.objects.filter(breaker_name=breaker.name).order_by(
            "-created_at"
        )[:AUDIT_TRAIL_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _admin_link(i),
                    f"{i.created_at:%Y-%m-%d %H:%M:%S}",
                    i.severity,
                    i.trigger,
                    Truncator(i.reason).chars(80),
                    f"resolved by {i.resolved_by}" if i.resolved else "open",
                    "sent" if i.alert_sent else "not sent",
                )
                for i in incidents
            ),
        )
        return _table(("id", "created", "type", "reason", "status", "alert"), rows)

    @admin.display(description="alerts (newest first)")
    def recent_alerts(self, breaker: CircuitBreaker) -> str:
        alerts = breaker_deliveries()[:AUDIT_TRAIL_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _admin_link(a),
                    f"{a.created_at:%Y-%m-%d %H:%M:%S}",
                    f"{a.payload['data'].get('event')} -> {a.channel.name}",
                    a.status,
                    f"{a.attempts}/{a.max_attempts}",
                    Truncator(a.last_error).chars(80) or "-",
                )
                for a in alerts
            ),
        )
        return _table(("id", "created", "event", "status", "attempts", "last error"), rows)

    @admin.action(description="Disable V2 (reason, optional TTL)", permissions=["operate"])
    def disable_v2(self, request, queryset: QuerySet):
        data, page = action_form(
            self,
            request,
            queryset,
            form_class=DisableForm,
            title="Disable V2 shadow simulation",
            description=(
                "Opens the circuit breaker: V1 keeps serving, V2 stops running in shadow. "
                "A P2 manual incident and a disable alert are created."
            ),
            submit="Disable V2",
        )
        if page is not None:
            return page
        message = disable_breaker(
            actor=user_actor(request), reason=data["reason"], ttl_hours=data["ttl_hours"]
        )
        self.message_user(request, message, messages.WARNING)
        return None

    @admin.action(description="Enable V2 (reason)", permissions=["operate"])
    def enable_v2(self, request, queryset: QuerySet):
        data, page = action_form(
            self,
            request,
            queryset,
            form_class=ReasonForm,
            title="Re-enable V2 shadow simulation",
            description=(
                "Closes the circuit breaker, resolves its incident and queues an enable alert."
            ),
            submit="Enable V2",
        )
        if page is not None:
            return page
        message = enable_breaker(actor=user_actor(request), reason=data["reason"])
        self.message_user(request, message, messages.SUCCESS)
        return None


def _table(headers: tuple[str, ...], rows: str) -> str:
    if not rows:
        return "-"
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, rows)


# Incidents ----------------------------------------------------------------------------


@admin.register(BreakerIncident)
class BreakerIncidentAdmin(_OperatorAdmin):
    list_display = (
        "id",
        "created_at",
        "severity",
        "trigger",
        "short_reason",
        "drift_score",
        "sample_count",
        "resolved",
        "resolved_by",
        "alert_sent",
    )
    list_filter = ("resolved", "severity", "trigger", "alert_sent", "created_at")
    search_fields = ("=id", "reason")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    actions = ("resolve",)
    readonly_fields = (
        "id",
        "breaker_name",
        "created_at",
        "reason",
        "severity",
        "trigger",
        "drift_score",
        "sample_count",
        "details_pretty",
        "resolved",
        "resolved_at",
        "resolved_by",
        "resolution_notes",
        "alert_sent",
        "alert_sent_at",
        "alerts",
    )
    fields = readonly_fields

    @admin.display(description="reason")
    def short_reason(self, incident: BreakerIncident) -> str:
        return Truncator(incident.reason).chars(80)

    @admin.display(description="details")
    def details_pretty(self, incident: BreakerIncident) -> str:
        return _pretty_json(incident.details)

    @admin.display(description="alerts")
    def alerts(self, incident: BreakerIncident) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    _admin_link(a),
                    f"{a.payload['data'].get('event')} -> {a.channel.name}",
                    a.status,
                    f"{a.attempts}/{a.max_attempts}",
                )
                for a in breaker_deliveries(incident_id=incident.pk).reverse()
            ),
        )
        return _table(("id", "event", "status", "attempts"), rows)

    @admin.action(description="Resolve selected incidents (notes)", permissions=["operate"])
    def resolve(self, request, queryset: QuerySet):
        data, page = action_form(
            self,
            request,
            queryset,
            form_class=NotesForm,
            title="Resolve incidents",
            description=(
                "Marks the incidents resolved. The incident of an open breaker is resolved by "
                "enabling the breaker, so it is left alone here."
            ),
            submit="Resolve",
        )
        if page is not None:
            return page
        resolved, left = resolve_incidents(
            actor=user_actor(request),
            incident_ids=list(queryset.values_list("pk", flat=True)),
            notes=data["notes"],
        )
        self.message_user(request, f"Resolved {resolved} incidents.", messages.SUCCESS)
        if left:
            self.message_user(
                request,
                f"{left} left alone: already resolved, or the open breaker's incident "
                "(enable the breaker to resolve it).",
                messages.WARNING,
            )
        return None


# Canary reports -----------------------------------------------------------------------


@admin.register(CanaryReport)
class CanaryReportAdmin(_OperatorAdmin):
    list_display = (
        "run_id",
        "timestamp",
        "status",
        "passed",
        "sample_source",
        "total_samples",
        "evaluated_of_needed",
        "matching_samples",
        "minor_drift_samples",
        "major_drift_samples",
        "kl_divergence",
        "js_distance",
        "outlier_count",
        "duration_ms",
    )
    list_filter = ("status", "passed", "sample_source", "timestamp")
    search_fields = ("=run_id",)
    date_hierarchy = "timestamp"
    ordering = ("-timestamp", "-id")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("run_id", "timestamp", "duration_ms"),
                    ("status", "passed", "failure_reasons_list"),
                    ("evaluated_samples", "min_samples"),
                    ("sample_source", "drift_threshold"),
                )
            },
        ),
        (
            "Metrics",
            {
                "fields": (
                    (
                        "total_samples",
                        "matching_samples",
                        "minor_drift_samples",
                        "major_drift_samples",
                    ),
                    ("median_cost_diff", "p90_cost_diff", "outlier_count"),
                    ("kl_divergence", "js_distance"),
                )
            },
        ),
        ("Samples", {"fields": ("diffs_pretty", "comparisons_pretty")}),
    )
    readonly_fields = (
        "run_id",
        "timestamp",
        "duration_ms",
        "status",
        "passed",
        "failure_reasons_list",
        "evaluated_samples",
        "min_samples",
        "sample_source",
        "drift_threshold",
        "total_samples",
        "matching_samples",
        "minor_drift_samples",
        "major_drift_samples",
        "median_cost_diff",
        "p90_cost_diff",
        "outlier_count",
        "kl_divergence",
        "js_distance",
        "diffs_pretty",
        "comparisons_pretty",
    )

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # The changelist never shows the sample lists; only the detail page needs them.
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            queryset = queryset.defer("comparisons", "diffs")
        return queryset

    @admin.display(description="evaluated / needed")
    def evaluated_of_needed(self, report: CanaryReport) -> str:
        # "3 / 100" on an insufficient_data run says at a glance how far it is from deciding.
        needed = "-" if report.min_samples is None else report.min_samples
        return f"{report.evaluated_samples} / {needed}"

    @admin.display(description="reasons")
    def failure_reasons_list(self, report: CanaryReport) -> str:
        if not report.failure_reasons:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", "<li>{}</li>", ((r,) for r in report.failure_reasons)),
        )

    @admin.display(description="diffs (major drift and mismatch)")
    def diffs_pretty(self, report: CanaryReport) -> str:
        return _pretty_json(report.diffs)

    @admin.display(description="comparisons")
    def comparisons_pretty(self, report: CanaryReport) -> str:
        return _pretty_json(report.comparisons)
