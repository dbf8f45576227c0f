"""The operator overview: its figures are the API's and detection's, per tenant and range."""

import re
from datetime import date
from decimal import Decimal
from html import unescape

import pytest
import time_machine
from django.urls import reverse

from analytics.admin.display import money
from analytics.models import Baseline, SnapshotType
from analytics.selectors.statistics import (
    DAY,
    HOUR,
    StatisticsWindow,
    cost_breakdown_series,
    cost_series,
    statistics_coverage,
)
from analytics.services.overview import (
    OTHER,
    month_forecast,
    overview_build,
    spend_headline,
)
from analytics.services.snapshots import snapshot_compute
from tests.analytics.factories import IncidentFactory
from tests.factories import BudgetFactory, CostRecordFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 20, 15, 30)  # a Friday afternoon
OVERVIEW = "/admin/"


def spend(tenant, at, cents, **fields):
    return CostRecordFactory(tenant=tenant, created_at=at, cost_cents=Decimal(cents), **fields)


def three_days_of_traffic(tenant):
    """Mar 17-19: two models, two features and untagged records, Mar 17 also snapshotted."""
    for day in (17, 18, 19):
        spend(tenant, utc(2026, 3, day, 9), "10.5", model="gpt-4o", feature_tag="chat")
        spend(tenant, utc(2026, 3, day, 10), "3.25", model="gpt-4o-mini", feature_tag="search")
        spend(tenant, utc(2026, 3, day, 11), "1.125", model="gpt-4o-mini", feature_tag=None)
    spend(tenant, utc(2026, 3, 19, 12), "40", model="gpt-4o", feature_tag="chat", user_id="u1")
    # Mar 17 is answered from its daily snapshot, the rest from the records.
    snapshot_compute(tenant=tenant, snapshot_type=SnapshotType.DAILY, period_start=utc(2026, 3, 17))


def page_text(response, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', response.content.decode(), re.S)
    assert match, element_id
    return unescape(match.group(1)).strip()


# --- the figures are the API's ---------------------------------------------------------------


@pytest.mark.parametrize("group_by", ["model", "feature"])
def test_stacked_buckets_add_up_to_the_api_series(tenant, group_by):
    # given traffic partly answered by a snapshot
    three_days_of_traffic(tenant)
    window = StatisticsWindow(utc(2026, 3, 16), utc(2026, 3, 21), DAY)

    # when
    with time_machine.travel(NOW, tick=False):
        overview = overview_build(tenant=tenant, window=window, group_by=group_by, now=NOW)

    # then every bucket is there, zero-filled, and its segments add up to the API's point
    series = {point["ts"]: point["spend_cents"] for point in overview.statistics["series"]}
    assert [b.start.day for b in overview.buckets] == [16, 17, 18, 19, 20]
    for bucket in overview.buckets:
        assert sum(bucket.segments.values(), Decimal(0)) == bucket.total_cents
        assert bucket.total_cents == series.get(f"{bucket.start:%Y-%m-%d}", 0)
    assert overview.buckets[3].total_cents == Decimal("54.875")
    if group_by == "feature":
        assert overview.stack_keys == ["chat", "search", "untagged"]
        assert overview.buckets[1].segments["untagged"] == Decimal("1.125")
    else:
        assert overview.stack_keys == ["gpt-4o", "gpt-4o-mini"]


def test_breakdown_series_agrees_with_the_series_by_the_hour_too(tenant):
    # given
    three_days_of_traffic(tenant)
    snapshot_compute(
        tenant=tenant, snapshot_type=SnapshotType.HOURLY, period_start=utc(2026, 3, 18, 9)
    )
    window = StatisticsWindow(utc(2026, 3, 18), utc(2026, 3, 20), HOUR)
    coverage = statistics_coverage(tenant=tenant, window=window)

    # when
    rows = cost_breakdown_series(tenant=tenant, window=window, coverage=coverage)

    # then per hour, the models and the features each add up to the series
    series = {
        bucket: total
        for bucket, total, *_ in cost_series(tenant=tenant, window=window, coverage=coverage)
    }
    for dimension in ("model", "feature"):
        sums: dict = {}
        for bucket, row_dimension, _, cents in rows:
            if row_dimension == dimension:
                sums[bucket] = sums.get(bucket, Decimal(0)) + cents
        assert sums == series


def test_many_keys_fold_into_other(tenant):
    # given eight models
    for n in range(8):
        spend(tenant, utc(2026, 3, 19, 9), str(10 - n), model=f"model-{n}")
    window = StatisticsWindow(utc(2026, 3, 19), utc(2026, 3, 20), DAY)

    # when
    overview = overview_build(tenant=tenant, window=window, group_by="model", now=NOW)

    # then the five largest keep their colour and the rest are one segment
    assert overview.stack_keys == ["model-0", "model-1", "model-2", "model-3", "model-4", OTHER]
    assert overview.buckets[0].segments[OTHER] == Decimal(3 + 4 + 5)


def test_page_shows_the_api_figures_for_the_same_range(tenant, api_client, admin_client):
    # given
    three_days_of_traffic(tenant)

    with time_machine.travel(NOW, tick=False):
        # when the operator looks at the last 7 days by feature
        page = admin_client.get(OVERVIEW, {"tenant": "acme", "range": "7", "by": "feature"})
        # and the API is asked for the same window
        api = api_client.get(
            "/api/v1/analytics/cost/",
            {"from": "2026-03-14T00:00:00Z", "to": "2026-03-21T00:00:00Z", "resolution": "hour"},
        ).json()

    # then the page shows the same numbers, in dollars
    assert page.status_code == 200
    assert page_text(page, "overview-range-total") == money(
        Decimal(str(api["totals"]["spend_cents"]))
    )
    html = page.content.decode()
    for row in api["by_feature"]:
        shown = money(Decimal(str(row["spend_cents"])))
        assert f'>{row["feature_tag"]}</a></td><td class="num">{shown}<' in html
    assert page.context["query"].window.resolution == HOUR  # a week is drawn by the hour


def test_each_tenant_sees_only_its_own_spend(tenant, other_tenant, admin_client):
    # given
    spend(tenant, utc(2026, 3, 19, 9), "12")
    spend(other_tenant, utc(2026, 3, 19, 9), "7000")

    # when
    with time_machine.travel(NOW, tick=False):
        acme = admin_client.get(OVERVIEW, {"tenant": "acme"})
        globex = admin_client.get(OVERVIEW, {"tenant": "globex"})

    # then
    assert page_text(acme, "overview-range-total") == "$0.12"
    assert page_text(globex, "overview-range-total") == "$70.00"
    # the last tenant picked is the one shown next time
    with time_machine.travel(NOW, tick=False):
        again = admin_client.get(OVERVIEW)
    assert page_text(again, "overview-range-total") == "$70.00"


# --- headline ----------------------------------------------------------------------------------


def test_headline_compares_with_the_same_stretch_of_the_period_before(tenant):
    # given
    spend(tenant, utc(2026, 3, 20, 9), "300")  # today before now
    spend(tenant, utc(2026, 3, 19, 9), "100")  # yesterday before this time of day
    spend(tenant, utc(2026, 3, 19, 18), "900")  # yesterday after it: not compared
    spend(tenant, utc(2026, 3, 2), "50")
    spend(tenant, utc(2026, 2, 10), "200")  # February, before day 20
    spend(tenant, utc(2026, 2, 25), "1000")  # February, after it

    # when
    headline = spend_headline(tenant=tenant, now=NOW)

    # then
    assert (headline["today"].cents, headline["today"].previous_cents) == (300, 100)
    assert headline["today"].change_pct == pytest.approx(200.0)
    assert headline["month"].cents == 300 + 100 + 900 + 50
    assert headline["month"].previous_cents == 200
    assert headline["forecast"].previous_cents == 1200
    assert headline["forecast"].cents == pytest.approx(
        Decimal(1350) * Decimal(31 * 24) / Decimal(19 * 24 + 15.5)
    )


def test_forecast_waits_for_the_first_three_days_of_the_month():
    assert month_forecast(spend=Decimal(100), at=utc(2026, 3, 3, 23)) is None
    # a month of 31 days, 4 days in: 31/4 of what was spent
    assert month_forecast(spend=Decimal(100), at=utc(2026, 3, 5)) == Decimal("775")


# --- band, markers, movers, budgets, incidents ------------------------------------------------


def test_expected_band_is_each_days_baseline(tenant):
    # given baselines as of Mar 17 and Mar 19 (Mar 18 has none: it uses Mar 17's)
    for as_of, mean, spread in ((date(2026, 3, 17), 100.0, 20.0), (date(2026, 3, 19), 50.0, 80.0)):
        Baseline.objects.create(
            tenant=tenant,
            entity_type="tenant",
            entity_id=None,
            window_days=7,
            as_of=as_of,
            avg_daily_cost_cents=mean,
            stddev_daily_cost_cents=spread,
            avg_daily_requests=1,
            max_daily_cost_cents=mean,
            min_daily_cost_cents=mean,
            samples_count=7,
            computed_at=NOW,
            valid_until=NOW,
            is_current=as_of.day == 19,
        )
    window = StatisticsWindow(utc(2026, 3, 16), utc(2026, 3, 20), DAY)

    # when
    overview = overview_build(tenant=tenant, window=window, group_by="model", now=NOW)

    # then
    assert [(b.expected_cents, b.band_cents) for b in overview.buckets] == [
        (None, None),
        (100.0, (80.0, 120.0)),
        (100.0, (80.0, 120.0)),
        (50.0, (0.0, 130.0)),  # the band does not go below $0
    ]


def test_chart_marks_incidents_and_links_to_them(tenant, admin_client):
    # given an incident that started before the range and one inside it
    spend(tenant, utc(2026, 3, 19, 9), "12")
    early = IncidentFactory(
        tenant=tenant, started_on=date(2026, 2, 1), last_seen_on=date(2026, 3, 1)
    )
    inside = IncidentFactory(
        tenant=tenant, started_on=date(2026, 3, 18), last_seen_on=date(2026, 3, 19)
    )
    IncidentFactory(tenant=tenant, started_on=date(2026, 1, 1), last_seen_on=date(2026, 1, 2))

    # when
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(OVERVIEW, {"range": "30"})

    # then each incident touching the range is a marker on its first day in the range
    markers = page.context["overview"]["chart"]["markers"]
    urls = [marker["url"] for marker in markers]
    assert urls == [
        reverse("admin:analytics_incident_change", args=[early.pk]),
        reverse("admin:analytics_incident_change", args=[inside.pk]),
    ]
    bars = page.context["overview"]["chart"]["bars"]
    assert (
        markers[1]["x"]
        == bars[(date(2026, 3, 18) - date(2026, 2, 19)).days]["slot_x"]
        + page.context["overview"]["chart"]["slot"] / 2
    )
    assert f'href="{urls[1]}" class="marker"' in page.content.decode()


def test_movers_rank_entities_by_their_rise_above_baseline(tenant):
    # given u1 steady at 10 cents a day, u2 jumping from 10 to 50 on Mar 19
    for day in range(5, 20):
        spend(tenant, utc(2026, 3, day, 9), "10", user_id="u1")
        spend(tenant, utc(2026, 3, day, 10), "50" if day == 19 else "10", user_id="u2")
    for day in range(5, 20):
        snapshot_compute(
            tenant=tenant, snapshot_type=SnapshotType.DAILY, period_start=utc(2026, 3, day)
        )
    window = StatisticsWindow(utc(2026, 3, 19), utc(2026, 3, 21), DAY)

    # when
    overview = overview_build(tenant=tenant, window=window, group_by="model", now=NOW)

    # then only u2 rose, by 40 cents against its 10-cent baseline
    assert [
        (m["entity_id"], m["increase_cents"], m["increase_pct"]) for m in overview.movers["user"]
    ] == [("u2", 40.0, 400.0)]


def test_budgets_show_usage_threshold_and_eta(tenant, admin_client):
    # given a $10/day budget with $9 spent by 15:30
    BudgetFactory(
        tenant=tenant, daily_limit_cents=1000, monthly_limit_cents=None, warn_threshold_pct=80
    )
    spend(tenant, utc(2026, 3, 20, 9), "900")

    # when
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(OVERVIEW)

    # then
    [budget] = page.context["overview"]["budgets"]
    [daily] = budget["periods"]
    assert (daily["spend"], daily["limit"], daily["usage"], daily["tone"]) == (
        "$9.00",
        "$10.00",
        "90.0%",
        "warn",
    )
    assert daily["eta"] == "Mar 20 17:13 UTC"  # the budget status endpoint's burn-down ETA
    assert 'style="left: 80%"' in page.content.decode()  # the threshold on the gauge


def test_open_incidents_most_severe_first(tenant, admin_client):
    # given
    low = IncidentFactory(
        tenant=tenant,
        severity="LOW",
        started_on=date(2026, 3, 18),
        last_seen_on=date(2026, 3, 19),
    )
    critical = IncidentFactory(
        tenant=tenant,
        severity="CRITICAL",
        started_on=date(2026, 2, 27),
        last_seen_on=date(2026, 3, 1),
    )
    IncidentFactory(tenant=tenant, severity="HIGH", status="resolved")

    # when
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(OVERVIEW)

    # then
    incidents = page.context["overview"]["incidents"]
    assert [row["incident"].pk for row in incidents["rows"]] == [critical.pk, low.pk]
    assert incidents["total"] == 2


def test_costsim_panel_shows_the_breaker_and_the_last_canary(tenant, admin_client):
    # when
    page = admin_client.get(OVERVIEW)

    # then
    [panel] = [panel for panel in page.context["panels"] if panel.id == "costsim"]
    assert panel.rows[0].value == "closed: V2 runs in shadow"
    assert panel.rows[1].value.startswith("none yet")


# --- the query ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"range": "custom", "since": "2026-03-01"}, "To"),
        ({"range": "custom", "since": "2026-03-10", "until": "2026-03-01"}, "To"),
        ({"range": "custom", "since": "2026-01-01", "until": "2026-04-01"}, "To"),
        ({"range": "custom", "since": "yesterday", "until": "2026-03-01"}, "From"),
        ({"range": "custom", "since": "1999-12-31", "until": "2000-01-02"}, "From"),
        ({"range": "365"}, "Range"),
        ({"by": "user"}, "Group by"),
        ({"tenant": "nobody"}, "Tenant"),
    ],
)
def test_bad_query_is_a_400_naming_the_field(tenant, admin_client, query, field):
    # when
    response = admin_client.get(OVERVIEW, query)

    # then
    assert response.status_code == 400
    assert f"<strong>{field}</strong>" in response.content.decode()


def test_custom_range_of_up_to_a_week_is_hourly_and_longer_daily(tenant, admin_client):
    with time_machine.travel(NOW, tick=False):
        week = admin_client.get(
            OVERVIEW, {"range": "custom", "since": "2026-03-01", "until": "2026-03-07"}
        )
        longer = admin_client.get(
            OVERVIEW, {"range": "custom", "since": "2026-03-01", "until": "2026-03-08"}
        )
    assert week.context["query"].window == StatisticsWindow(utc(2026, 3, 1), utc(2026, 3, 8), HOUR)
    assert longer.context["query"].window.resolution == DAY
    assert len(week.context["overview"]["chart"]["bars"]) == 7 * 24


def test_overview_needs_the_permission_to_see_cost_records(tenant, client, django_user_model):
    # given a staff user who may only look at budgets
    from django.contrib.auth.models import Permission

    spend(tenant, utc(2026, 3, 19, 9), "12")
    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_budget"))
    client.force_login(user)

    # when
    response = client.get(OVERVIEW)

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="overview-no-permission"' in html and "$0.12" not in html


def test_unpriced_records_are_counted_and_linked(tenant, admin_client):
    # given a priced record and one of a model without a price
    spend(tenant, utc(2026, 3, 19, 9), "12", model="gpt-4o")
    CostRecordFactory(
        tenant=tenant,
        created_at=utc(2026, 3, 19, 10),
        model="mystery-1",
        cost_cents=None,
        cost_source="unpriced",
    )

    # when
    with time_machine.travel(NOW, tick=False):
        page = admin_client.get(OVERVIEW)
        records = admin_client.get(page.context["overview"]["unpriced_url"])

    # then the chart holds the priced spend and the page says one record has no price
    assert page.status_code == 200
    assert page_text(page, "overview-range-total") == "$0.12"
    assert page_text(page, "overview-unpriced") == "1 unpriced record"
    # and links to it
    assert [record.model for record in records.context["cl"].result_list] == ["mystery-1"]
