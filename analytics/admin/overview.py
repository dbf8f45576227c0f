"""The console's landing page: one tenant's spend, its trend, what is unusual, what needs a look.

The figures come from `analytics.services.overview` (which reads what the API and detection
read); this module picks the tenant and range from the query string, turns cents into
dollars and the series into chart geometry, and renders `admin/overview.html`. Other apps
add panels (CostSim adds its breaker and canary) with `register_overview_panel`, so the base
app does not import them.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from django import forms
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from analytics.admin.charts import ChartBucket, ChartMarker, chart_svg, stacked_chart
from analytics.admin.display import cost_records_url, day_bounds, money, percent, runs_url
from analytics.db import replica_reads
from analytics.models import Severity, Tenant
from analytics.selectors.statistics import DAY, HOUR, StatisticsWindow
from analytics.services.overview import OTHER, Overview, overview_build

TEMPLATE = "admin/overview.html"
SESSION_TENANT = "overview_tenant"
SPEND_PERMISSION = "analytics.view_costrecord"
RANGES = (7, 30, 90)
DEFAULT_RANGE = 30
MAX_DAYS = 90  # the statistics API's longest window
HOURLY_UP_TO_DAYS = 7  # shorter ranges are charted per hour
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 30)
FORECAST_WAIT = "A forecast needs the month's first three days, as a budget's ETA does."

# --- Panels other apps add -------------------------------------------------------------------


@dataclass(frozen=True)
class PanelRow:
    label: str
    value: str
    tone: str = ""  # "", "ok", "warn" or "bad": how the value is coloured
    url: str = ""


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    rows: list[PanelRow]
    link_text: str = ""
    link_url: str = ""


_PANELS: list[Callable[..., Panel | None]] = []


def register_overview_panel(panel: Callable[..., Panel | None]):
    """Add `panel(request)` to the overview; it returns a Panel, or None to show nothing.

    Panels describe the whole deployment (a tenant picker does not change them).
    """
    if panel not in _PANELS:
        _PANELS.append(panel)
    return panel


# --- The query: tenant, range, grouping ----------------------------------------------------


class OverviewForm(forms.Form):
    """`?tenant=<slug>&range=7|30|90|custom&since=YYYY-MM-DD&until=YYYY-MM-DD&by=model|feature`."""

    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label=None,
    )
    range = forms.ChoiceField(
        choices=[(str(days), f"{days} days") for days in RANGES] + [("custom", "Custom")],
        required=False,
    )
    since = forms.DateField(required=False, label="From", input_formats=["%Y-%m-%d"])
    until = forms.DateField(required=False, label="To", input_formats=["%Y-%m-%d"])
    by = forms.ChoiceField(
        choices=[("model", "By model"), ("feature", "By feature")],
        required=False,
        label="Group by",
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("range") != "custom":
            return cleaned
        since, until = cleaned.get("since"), cleaned.get("until")
        for name, value in (("since", since), ("until", until)):
            if name in self.errors:
                continue
            if value is None:
                self.add_error(name, "Required for a custom range (YYYY-MM-DD).")
            elif not EARLIEST <= value <= LATEST:
                self.add_error(name, "Must be between 2000-01-01 and 2099-12-30.")
        if self.errors:
            return cleaned
        if until < since:
            self.add_error("until", "Must not be before the first day.")
        elif (until - since).days + 1 > MAX_DAYS:
            self.add_error("until", f"A range covers at most {MAX_DAYS} days.")
        return cleaned


@dataclass(frozen=True)
class OverviewQuery:
    tenant: Tenant | None
    range: str
    first_day: date
    last_day: date
    group_by: str

    @property
    def window(self) -> StatisticsWindow:
        start, end = day_bounds(self.first_day, self.last_day)
        days = (self.last_day - self.first_day).days + 1
        return StatisticsWindow(start, end, HOUR if days <= HOURLY_UP_TO_DAYS else DAY)


def overview_query(form: OverviewForm, *, today: date, remembered: str | None) -> OverviewQuery:
    """The tenant and range to show from a valid form: the last 30 days of the tenant picked
    last (or the first by slug) unless the query says otherwise."""
    data = form.cleaned_data
    tenant = data.get("tenant")
    if tenant is None:
        tenants = Tenant.objects.order_by("slug")
        tenant = (remembered and tenants.filter(slug=remembered).first()) or tenants.first()
    chosen = data.get("range") or str(DEFAULT_RANGE)
    if chosen == "custom":
        first_day, last_day = data["since"], data["until"]
    else:
        first_day, last_day = today - timedelta(days=int(chosen) - 1), today
    return OverviewQuery(tenant, chosen, first_day, last_day, data.get("by") or "model")


# --- From figures to what the page shows -----------------------------------------------------


def _headline(overview: Overview) -> list[dict]:
    labels = {
        "today": "Spend today",
        "month": "This month so far",
        "forecast": "Forecast for the month",
    }
    cards = []
    for key, label in labels.items():
        figure = overview.headline[key]
        cards.append(
            {
                "id": key,
                "label": label,
                "value": money(figure.cents) if figure.cents is not None else "—",
                "note": "" if figure.cents is not None else FORECAST_WAIT,
                "previous": money(figure.previous_cents),
                "previous_label": figure.previous_label,
                "change": percent(figure.change_pct),
                "up": figure.change_pct is not None and figure.change_pct > 0,
            }
        )
    return cards


def _bucket_label(start: datetime, resolution: str) -> str:
    if resolution == DAY:
        return f"{start:%a %Y-%m-%d}"
    return f"{start:%a %Y-%m-%d %H:00} UTC"


def _chart(overview: Overview) -> dict:
    resolution = overview.window.resolution
    step = timedelta(days=1) if resolution == DAY else timedelta(hours=1)
    tenant_id = overview.tenant.pk
    buckets = [
        ChartBucket(
            start=bucket.start,
            label=_bucket_label(bucket.start, resolution),
            segments=tuple(
                (key, float(bucket.segments.get(key, 0))) for key in overview.stack_keys
            ),
            total=float(bucket.total_cents),
            expected=bucket.expected_cents,
            band=bucket.band_cents,
            url=cost_records_url(tenant_id=tenant_id, start=bucket.start, end=bucket.start + step),
        )
        for bucket in overview.buckets
    ]
    markers = [
        ChartMarker(
            bucket_index=marker.bucket_index,
            title=(
                f"Incident #{marker.incident.pk} ({marker.incident.get_severity_display()}, "
                f"{marker.incident.started_on:%b %d} to {marker.incident.last_seen_on:%b %d}): "
                f"{marker.incident.title}"
            ),
            url=reverse("admin:analytics_incident_change", args=[marker.incident.pk]),
            severity=marker.incident.severity,
        )
        for marker in overview.markers
    ]
    if resolution == DAY:
        chart = stacked_chart(buckets, keys=overview.stack_keys, markers=markers)
    else:
        # Hours: a label at each midnight.
        chart = stacked_chart(
            buckets,
            keys=overview.stack_keys,
            markers=markers,
            label_every=24,
            x_label=lambda start: f"{start:%a} {start:%b} {start.day}",
        )
    chart["id"] = "overview-chart"
    chart["svg"] = chart_svg(
        chart,
        label="Spend per bucket stacked by key, the expected band and line from the baselines, "
        "incident markers",
    )
    return chart


def _breakdown(overview: Overview) -> list[dict]:
    """The range's spend per model or feature, as the statistics API reports it."""
    statistics = overview.statistics
    window = overview.window
    if overview.group_by == "model":
        rows = [(row["model"], row) for row in statistics["by_model"]]
    else:
        rows = [(row["feature_tag"], row) for row in statistics["by_feature"]]
    shown = []
    for key, row in rows:
        entity_id = None if key == "untagged" and overview.group_by == "feature" else key
        shown.append(
            {
                "key": key,
                "spend": money(row["spend_cents"]),
                "requests": row["requests"],
                "share": percent(row["pct_of_total"], signed=False),
                "url": cost_records_url(
                    tenant_id=overview.tenant.pk,
                    start=window.start,
                    end=window.end,
                    entity_type=overview.group_by if entity_id is not None else None,
                    entity_id=entity_id,
                ),
            }
        )
    return shown


def _movers(overview: Overview) -> list[dict]:
    window = overview.window
    titles = {"user": "Users", "feature": "Features", "model": "Models"}
    groups = []
    for entity_type, rows in overview.movers.items():
        groups.append(
            {
                "type": entity_type,
                "title": titles[entity_type],
                "rows": [
                    {
                        "entity_id": row["entity_id"],
                        "actual": money(row["actual_cents"]),
                        "expected": money(row["expected_cents"]),
                        "increase": money(row["increase_cents"]),
                        "increase_pct": percent(row["increase_pct"])
                        if row["increase_pct"] is not None
                        else "new",
                        "url": cost_records_url(
                            tenant_id=overview.tenant.pk,
                            start=window.start,
                            end=window.end,
                            entity_type=entity_type,
                            entity_id=row["entity_id"],
                        ),
                    }
                    for row in rows
                ],
            }
        )
    return groups


def _budgets(overview: Overview) -> list[dict]:
    shown = []
    for gauge in overview.budgets:
        budget = gauge["budget"]
        scope = (
            "Whole tenant"
            if budget.entity_id is None
            else f"{budget.get_budget_type_display()}: {budget.entity_id}"
        )
        periods = []
        for status in gauge["periods"]:
            usage = status["usage_pct"]
            tone = "bad" if usage >= 100 else "warn" if usage >= budget.warn_threshold_pct else "ok"
            eta = status["eta_exhausted_at"]
            periods.append(
                {
                    "period": status["period"],
                    "spend": money(status["spend_cents"]),
                    "limit": money(status["limit_cents"]),
                    "usage": f"{usage:.1f}%",
                    "fill": min(usage, 100.0),
                    "threshold": budget.warn_threshold_pct,
                    "tone": tone,
                    "eta": f"{eta:%b %d %H:%M} UTC" if eta else "",
                    "exhausted": usage >= 100,
                }
            )
        shown.append(
            {
                "scope": scope,
                "url": reverse("admin:analytics_budget_change", args=[budget.pk]),
                "warn": budget.warn_threshold_pct,
                "hard": budget.hard_limit_enabled,
                "periods": periods,
            }
        )
    return shown


def _incidents(overview: Overview) -> dict:
    counts = [
        {"severity": label, "value": value, "count": overview.incident_counts.get(value, 0)}
        for value, label in reversed(Severity.choices)
    ]
    return {
        "counts": counts,
        "total": sum(overview.incident_counts.values()),
        "rows": [
            {
                "incident": incident,
                "url": reverse("admin:analytics_incident_change", args=[incident.pk]),
                "impact": money(incident.impact_cents),
            }
            for incident in overview.incidents
        ],
        "list_url": (
            f"{reverse('admin:analytics_incident_changelist')}"
            f"?attention=needs&tenant__id__exact={overview.tenant.pk}"
        ),
    }


def overview_context(overview: Overview) -> dict:
    statistics = overview.statistics
    window = overview.window
    return {
        "headline": _headline(overview),
        "chart": _chart(overview),
        "band_source": overview.band_source,
        "resolution": window.resolution,
        "range_total": money(statistics["totals"]["spend_cents"]),
        "range_requests": statistics["totals"]["requests"],
        "breakdown": _breakdown(overview),
        "movers": _movers(overview),
        "budgets": _budgets(overview),
        "incidents": _incidents(overview),
        "unpriced_records": overview.unpriced_records,
        "records_url": cost_records_url(
            tenant_id=overview.tenant.pk, start=window.start, end=window.end
        ),
        "runs_url": runs_url(tenant_id=overview.tenant.pk, start=window.start, end=window.end),
        "unpriced_url": cost_records_url(
            tenant_id=overview.tenant.pk, start=window.start, end=window.end
        )
        + "&cost_source__exact=unpriced",
        "other_key": OTHER,
    }


# --- The view --------------------------------------------------------------------------------


def overview_view(admin_site, request, extra_context=None) -> TemplateResponse:
    """The admin index: the overview of one tenant, then the console's models."""
    now = timezone.now()
    today = now.astimezone(UTC).date()
    form = OverviewForm(request.GET)
    context = {
        **admin_site.each_context(request),
        "title": "Overview",
        "subtitle": None,
        "app_list": admin_site.get_app_list(request),
        "form": form,
        "tenants": list(Tenant.objects.order_by("slug").values_list("slug", "name")),
        **(extra_context or {}),
    }
    if not request.user.has_perm(SPEND_PERMISSION):
        # Spend is cost records summed: who may not see those sees the console's models only.
        context["no_permission"] = True
        return TemplateResponse(request, TEMPLATE, context)
    if not form.is_valid():
        context["errors"] = _form_errors(form)
        return TemplateResponse(request, TEMPLATE, context, status=400)
    query = overview_query(form, today=today, remembered=request.session.get(SESSION_TENANT))
    context["query"] = query
    if query.tenant is not None:
        if request.session.get(SESSION_TENANT) != query.tenant.slug:
            request.session[SESSION_TENANT] = query.tenant.slug  # a session write only on change
        with replica_reads():
            overview = overview_build(
                tenant=query.tenant, window=query.window, group_by=query.group_by, now=now
            )
        context["overview"] = overview_context(overview)
        context["has_data"] = bool(overview.statistics["series"])
    context["panels"] = [panel for panel in (build(request) for build in _PANELS) if panel]
    context["range_links"] = _range_links(query)
    return TemplateResponse(request, TEMPLATE, context)


def _form_errors(form: OverviewForm) -> list[tuple[str, str]]:
    """(label, message) of every problem with the query, a form field by its label."""
    return [
        (form[name].label if name in form.fields else name, message)
        for name, messages in form.errors.items()
        for message in messages
    ]


def _range_links(query: OverviewQuery) -> dict:
    """Query strings of the range and grouping switches, keeping the other choices."""
    base = {"tenant": query.tenant.slug} if query.tenant else {}
    ranges = [
        {
            "label": f"{days} days",
            "current": query.range == str(days),
            "query": urlencode({**base, "range": days, "by": query.group_by}),
            "id": f"range-{days}",
        }
        for days in RANGES
    ]
    if query.range == "custom":
        dates = {
            "range": "custom",
            "since": query.first_day.isoformat(),
            "until": query.last_day.isoformat(),
        }
    else:
        dates = {"range": query.range}
    groupings = [
        {
            "label": label,
            "current": query.group_by == value,
            "query": urlencode({**base, **dates, "by": value}),
            "id": f"by-{value}",
        }
        for value, label in (("model", "By model"), ("feature", "By feature"))
    ]
    return {"ranges": ranges, "groupings": groupings}
