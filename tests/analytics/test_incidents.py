"""Incidents against PostgreSQL: detection on real cost records, grouped, gated and operated.

Every scenario is a tenant spending about 10,000 ¢ on a weekday (60 % of that on weekends)
through three features, three users and two models, with deterministic ±3 % noise per
record. Detection runs at 06:00 UTC, before the day's records (booked at 09:00), so the
statistical rule judges yesterday and the spike rule sees nothing yet today.
"""

import random
import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    BreachHistory,
    CostRecord,
    DetectionSettings,
    DriftTracking,
    Incident,
    IncidentKind,
)
from analytics.selectors.incidents import DetectionContext
from analytics.selectors.incidents import _effective as effective_settings
from analytics.services import expectation
from analytics.services.anomalies import anomalies_detect
from analytics.services.anomaly_lifecycle import anomaly_resolve
from analytics.services.incidents import (
    anomaly_verdict,
    incident_label,
    incident_resolve,
    incidents_acknowledge,
)
from analytics.signals import incident_escalated, incident_opened, incident_resolved
from tests.analytics.factories import PlannedActivityFactory
from tests.factories import BudgetFactory, CostRecordFactory, TenantFactory, utc

X = date(2026, 3, 3)  # a Tuesday: the day most scenarios change
HISTORY_DAYS = 38
WEEKEND = 0.6
NOISE = 0.03
# (feature, user, model, weekday cents): chat is the biggest feature, export the smallest,
# and export is spread over every user and both models.
ROWS = (
    ("chat", "u1", "m-large", 3000),
    ("chat", "u2", "m-large", 2500),
    ("search", "u2", "m-small", 1500),
    ("search", "u3", "m-large", 1500),
    ("export", "u1", "m-large", 500),
    ("export", "u2", "m-small", 500),
    ("export", "u3", "m-large", 500),
)
EVERY_FEATURE = "*"


def day_after(day: date, n: int = 1) -> date:
    return day + timedelta(days=n)


def noise(day: date, row: int) -> float:
    """The same ±3 % for a record of a given day and row in every test."""
    return 1 + random.Random(day.toordinal() * 10 + row).uniform(-NOISE, NOISE)


def spend_history(
    tenant,
    *,
    last: date,
    first: date | None = None,
    changes: dict[date, dict[str, float]] | None = None,
    moves: dict[date, tuple[str, str]] | None = None,
    growth: float = 0.0,
    scale: float = 1.0,
) -> None:
    """One record per row of ROWS a day at 09:00 UTC, from `first` (38 days before X) to `last`.

    `changes` multiplies a feature's records on a day ({day: {"export": 3}}; "*" is every
    feature); `moves` books one user's records to another on a day ({day: ("u2", "u3")});
    `growth` compounds per day from `first`; `scale` multiplies everything.
    """
    first = first or X - timedelta(days=HISTORY_DAYS)
    changes, moves = changes or {}, moves or {}
    records = []
    for offset in range((last - first).days + 1):
        day = day_after(first, offset)
        level = scale * (1 + growth) ** offset * (WEEKEND if day.weekday() >= 5 else 1.0)
        factors = changes.get(day, {})
        for index, (feature, user, model, cents) in enumerate(ROWS):
            factor = factors.get(feature, factors.get(EVERY_FEATURE, 1.0))
            if day in moves and user == moves[day][0]:
                user = moves[day][1]
            amount = cents * level * factor * noise(day, index)
            booked = utc(day.year, day.month, day.day, 9)
            records.append(
                CostRecordFactory.build(
                    tenant=tenant,
                    user_id=user,
                    feature_tag=feature,
                    model=model,
                    cost_cents=Decimal(f"{amount:.4f}"),
                    created_at=booked,
                    ingested_at=booked,
                )
            )
    # One INSERT for a whole history keeps each scenario fast.
    CostRecord.objects.bulk_create(records)


def scaled(factor: float, *days: date, feature: str = "export") -> dict[date, dict[str, float]]:
    """`changes` for spend_history: `feature` at `factor` times its spend on each of `days`."""
    return {day: {feature: factor} for day in days}


def detect(tenant, day: date, *, hour: int = 6, dry_run: bool = False) -> dict:
    """Detection as the hourly job runs it on `day` at `hour`:00 UTC."""
    with time_machine.travel(utc(day.year, day.month, day.day, hour), tick=False):
        return anomalies_detect(tenant=tenant, dry_run=dry_run)


def scopes(anomalies) -> set[tuple[str, str | None]]:
    return {(a.entity_type, a.entity_id) for a in anomalies}


def members(incident: Incident) -> set[int]:
    return set(incident.anomalies.values_list("pk", flat=True))


def snapshot(incident: Incident) -> dict:
    """The stored incident as detection computed it (everything but its clock fields)."""
    incident.refresh_from_db()
    return {
        "pk": incident.pk,
        "kind": incident.kind,
        "severity": incident.severity,
        "scope": (incident.entity_type, incident.entity_id),
        "window": (incident.started_on, incident.last_seen_on),
        "numbers": (
            incident.expected_cents,
            incident.actual_cents,
            incident.impact_cents,
            incident.impact_pct,
        ),
        "root_causes": incident.root_causes,
        "title": incident.title,
        "members": members(incident),
    }


@pytest.fixture
def signals_received():
    """(signal, incident id) for every incident signal sent while the test runs."""
    received = []
    handlers = []
    for name, signal in (
        ("opened", incident_opened),
        ("escalated", incident_escalated),
        ("resolved", incident_resolved),
    ):

        def handler(sender, incident, _name=name, **kwargs):
            received.append((_name, incident.pk))

        signal.connect(handler, weak=False)
        handlers.append((signal, handler))
    yield received
    for signal, handler in handlers:
        signal.disconnect(handler)


# --- Grouping ----------------------------------------------------------------------------


def test_tenant_outlier_and_the_entity_anomalies_it_causes_are_one_incident(tenant):
    # given the export feature at three times its spend on X (+30 % for the tenant)
    spend_history(tenant, last=X, changes=scaled(3, X))

    # when detection runs the day after
    result = detect(tenant, day_after(X))

    # then the tenant's, the feature's, the models' and the users' outliers are one incident
    assert {a.anomaly_type for a in result["anomalies"]} == {AnomalyType.STATISTICAL_OUTLIER}
    assert {("tenant", None), ("feature", "export"), ("model", "m-small")} <= scopes(
        result["anomalies"]
    )
    assert result["opened"] == 1
    (incident,) = Incident.objects.filter(tenant=tenant)
    assert members(incident) == {a.pk for a in result["anomalies"]}
    assert incident.kind == IncidentKind.OUTLIER
    assert (incident.entity_type, incident.entity_id) == ("tenant", None)
    assert (incident.started_on, incident.last_seen_on) == (X, X)


def test_next_days_spike_of_the_same_cause_joins_and_extends_the_incident(tenant):
    # given the export spike on X, already an incident, and again on the day after
    spend_history(tenant, last=day_after(X), changes=scaled(3, X, day_after(X)))
    first = detect(tenant, day_after(X))
    (incident,) = first["incidents"]

    # when detection runs on the next day
    second = detect(tenant, day_after(X, 2))

    # then the second day's anomalies join the same incident, which now ends a day later
    assert second["opened"] == 0
    assert [i.pk for i in second["incidents"]] == [incident.pk]
    assert Incident.objects.filter(tenant=tenant).count() == 1
    incident.refresh_from_db()
    assert (incident.started_on, incident.last_seen_on) == (X, day_after(X))
    assert members(incident) == {a.pk for a in first["anomalies"] + second["anomalies"]}
    assert {a.anomaly_date for a in second["anomalies"]} == {day_after(X)}


def test_a_change_five_days_after_the_last_one_opens_a_second_incident(tenant):
    # given the export spike on X and again five days later
    later = day_after(X, 5)
    spend_history(tenant, last=later, changes=scaled(3, X, later))
    (first,) = detect(tenant, day_after(X))["incidents"]

    # when detection runs the day after the second spike
    result = detect(tenant, day_after(later))

    # then a second incident holds it and the first one is left as it was
    assert result["opened"] == 1
    (second,) = result["incidents"]
    assert second.pk != first.pk
    assert (second.started_on, second.last_seen_on) == (later, later)
    first.refresh_from_db()
    assert (first.started_on, first.last_seen_on) == (X, X)
    assert Incident.objects.filter(tenant=tenant).count() == 2


def test_a_new_change_by_an_entity_that_only_moved_with_the_last_incident_opens_its_own(tenant):
    # given chat doubled on X, search up 30 % with it, and search alone tripled the day after
    spend_history(
        tenant,
        last=day_after(X),
        changes={X: {"chat": 2, "search": 1.3}, day_after(X): {"search": 3}},
    )
    (first,) = detect(tenant, day_after(X))["incidents"]
    first_causes = {c["entity_id"] for c in first.root_causes if c["share"] >= 0.25}
    assert ("feature", "search") in scopes(first.anomalies.all())
    assert "search" not in first_causes

    # when detection runs the next day
    result = detect(tenant, day_after(X, 2))

    # then the search change is an incident of its own, explained by search, and the chat
    # incident ends where it did
    assert result["opened"] == 1
    (second,) = [i for i in result["incidents"] if i.pk != first.pk]
    assert (second.started_on, second.last_seen_on) == (day_after(X), day_after(X))
    assert (second.root_causes[0]["entity_type"], second.root_causes[0]["entity_id"]) == (
        "feature",
        "search",
    )
    first.refresh_from_db()
    assert first.last_seen_on == X


def test_a_change_on_top_of_an_ongoing_drift_is_explained_by_what_rose(tenant):
    # given chat at twice its spend from X on (a drift its fitted level still lags), and
    # search tripled four days later
    later = day_after(X, 4)
    days = [day_after(X, n) for n in range(6)]
    changes = {day: {"chat": 2} for day in days}
    changes[later] = {"chat": 2, "search": 3}
    spend_history(tenant, last=days[-1], changes=changes)
    for day in days[1:5]:
        detect(tenant, day)
    (drift,) = Incident.objects.filter(tenant=tenant)
    assert drift.root_causes[0]["entity_id"] == "chat"

    # when detection judges the day search rose
    result = detect(tenant, day_after(later))

    # then that change is an incident of its own, and search explains it, not chat
    (new,) = [i for i in result["incidents"] if i.pk != drift.pk]
    assert (new.started_on, new.last_seen_on) == (later, later)
    assert (new.root_causes[0]["entity_type"], new.root_causes[0]["entity_id"]) == (
        "feature",
        "search",
    )
    assert "chat" not in {c["entity_id"] for c in new.root_causes}


def test_a_change_inside_a_jumps_drift_echo_opens_its_own_incident(tenant):
    # given chat at eight times its spend on X alone (the rolling week then runs 1.25x over
    # its baseline for a week, so the drift rule keeps reporting the jump), and search
    # tripled six days later, while the drift echo still extends the jump's incident
    later = day_after(X, 6)
    spend_history(tenant, last=later, changes={X: {"chat": 8}, later: {"search": 3}})
    for n in range(1, 7):
        detect(tenant, day_after(X, n))
    (jump,) = Incident.objects.filter(tenant=tenant)
    assert jump.kind == IncidentKind.DRIFT  # the echo joined the jump and extended it
    assert jump.last_seen_on >= day_after(X, 5)
    assert jump.root_causes[0]["entity_id"] == "chat"

    # when detection judges the day search rose
    result = detect(tenant, day_after(later))

    # then search's change is an incident of its own, explained by search; the jump's
    # incident keeps only its echo of that day and chat as its first cause
    (new,) = [i for i in result["incidents"] if i.pk != jump.pk]
    assert result["opened"] == 1
    assert (new.started_on, new.last_seen_on) == (later, later)
    assert (new.root_causes[0]["entity_type"], new.root_causes[0]["entity_id"]) == (
        "feature",
        "search",
    )
    assert {("tenant", None), ("feature", "search")} <= scopes(new.anomalies.all())
    jump.refresh_from_db()
    echo = jump.anomalies.filter(anomaly_date=later)
    assert {a.anomaly_type for a in echo} <= {AnomalyType.SUSTAINED_DRIFT}
    assert jump.root_causes[0]["entity_id"] == "chat"


def test_a_budget_anomaly_is_an_incident_of_its_own(tenant):
    # given the export spike on X and a monthly budget March has already overrun
    spend_history(tenant, last=X, changes=scaled(3, X))
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=None, monthly_limit_cents=10_000)

    # when detection runs the day after
    result = detect(tenant, day_after(X))

    # then the budget's anomaly is a budget incident, apart from the cost-change incident
    (exceeded,) = [a for a in result["anomalies"] if a.anomaly_type == AnomalyType.BUDGET_EXCEEDED]
    assert result["opened"] == 2
    by_kind = {i.kind: i for i in Incident.objects.filter(tenant=tenant)}
    assert set(by_kind) == {IncidentKind.BUDGET, IncidentKind.OUTLIER}
    assert by_kind[IncidentKind.BUDGET].budget_id == budget.pk
    assert members(by_kind[IncidentKind.BUDGET]) == {exceeded.pk}
    assert by_kind[IncidentKind.OUTLIER].budget_id is None
    assert exceeded.pk not in members(by_kind[IncidentKind.OUTLIER])


# --- Root causes ------------------------------------------------------------------------


def test_root_causes_rank_by_share_of_the_increase_not_by_spend(tenant):
    # given the smallest feature (export, 15 % of spend) tripling and chat (55 %) flat
    spend_history(tenant, last=X, changes=scaled(3, X))
    export_on_x = sum(
        Decimal(f"{cents * 3 * noise(X, index):.4f}")
        for index, (feature, _, _, cents) in enumerate(ROWS)
        if feature == "export"
    )

    # when detection runs the day after
    (incident,) = detect(tenant, day_after(X))["incidents"]

    # then export explains the increase first, and chat is no cause
    causes = incident.root_causes
    top = causes[0]
    assert (top["entity_type"], top["entity_id"]) == ("feature", "export")
    assert ("feature", "chat") not in {(c["entity_type"], c["entity_id"]) for c in causes}
    assert top["actual_cents"] == pytest.approx(float(export_on_x), abs=1e-4)
    assert top["expected_cents"] == pytest.approx(1500, rel=0.05)
    assert top["share"] == pytest.approx(1.0, abs=0.1)
    # and every cause's numbers agree with each other and with the incident's increase
    assert incident.impact_cents > 0
    for cause in causes:
        assert cause["delta_cents"] == pytest.approx(
            cause["actual_cents"] - cause["expected_cents"], abs=2e-4
        )
        assert cause["share"] == pytest.approx(
            cause["delta_cents"] / incident.impact_cents, abs=1e-4
        )
    assert [c["share"] for c in causes] == [round(c["share"], 4) for c in causes]


# --- Floors and settings ----------------------------------------------------------------


def test_a_change_under_the_money_floor_raises_anomalies_but_no_incident(tenant):
    # given a tenant of 50 ¢ a day at 1.6 times that on two days running (+60 ¢ in all)
    changes = scaled(1.6, X, day_after(X), feature=EVERY_FEATURE)
    spend_history(tenant, last=day_after(X), changes=changes, scale=0.005)

    # when detection runs late on both days, when their spend is in
    detect(tenant, X, hour=23)
    result = detect(tenant, day_after(X), hour=23)

    # then the tenant's two-day spike is raised, but it is too little money for an incident
    (spike,) = [
        a
        for a in result["anomalies"]
        if a.anomaly_type == AnomalyType.ABSOLUTE_SPIKE and a.entity_type == "tenant"
    ]
    assert spike.breach_count == 2
    assert (result["opened"], Incident.objects.filter(tenant=tenant).count()) == (0, 0)
    assert Anomaly.objects.get(pk=spike.pk).incident_id is None
    verdict = anomaly_verdict(spike, DetectionContext(tenant=tenant, as_of=day_after(X)))
    assert verdict.material is False
    assert verdict.reason.endswith("below the 100 cents floor")


@pytest.mark.parametrize(
    "floors",
    [{"outlier_min_impact_cents": 10_000}, {"outlier_min_impact_pct": 250}],
    ids=["money", "percent"],
)
def test_raising_the_floors_removes_an_incident_the_defaults_open(tenant, floors):
    # given the export spike (+3,000 ¢: +30 % for the tenant, +200 % for the feature), an
    # incident by default
    spend_history(tenant, last=X, changes=scaled(3, X))
    assert detect(tenant, day_after(X), dry_run=True)["opened"] == 1

    # when the tenant raises its floors above that
    DetectionSettings.objects.create(tenant=tenant, **floors)
    result = detect(tenant, day_after(X))

    # then detection opens nothing
    assert result["opened"] == 0
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_a_feature_only_change_opens_its_own_incident_only_while_features_are_monitored(tenant):
    # given export at 1.5 times its spend on X: +50 % for the feature, +7.5 % for the tenant
    spend_history(tenant, last=X, changes=scaled(1.5, X))
    (by_default,) = detect(tenant, day_after(X), dry_run=True)["incidents"]
    assert (by_default.entity_type, by_default.entity_id) == ("feature", "export")

    # when the tenant stops monitoring features
    DetectionSettings.objects.create(tenant=tenant, monitored_dimensions=["user", "model"])
    result = detect(tenant, day_after(X))

    # then the change opens nothing
    assert result["opened"] == 0
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_spend_moved_between_users_opens_nothing(tenant):
    # given u2's records booked to u3 on X: u3 spends 3.25 times as much, the tenant the same
    spend_history(tenant, last=X, moves={X: ("u2", "u3")})

    # when detection runs the day after
    result = detect(tenant, day_after(X))

    # then u3's outlier is raised, but it did not move the tenant's bill
    (u3,) = [a for a in result["anomalies"] if (a.entity_type, a.entity_id) == ("user", "u3")]
    assert ("tenant", None) not in scopes(result["anomalies"])
    verdict = anomaly_verdict(u3, DetectionContext(tenant=tenant, as_of=day_after(X)))
    assert verdict.reason.startswith("the tenant's total is within its noise")
    assert result["opened"] == 0
    assert not Incident.objects.filter(tenant=tenant).exists()


class FixedJudgements:
    """What the gate reads of a run, with a fixed judgement per scope."""

    def __init__(self, judgements):
        self.judgements = judgements
        self.settings = effective_settings(None)  # the project defaults

    def history_days(self, scope, before):
        return 56

    def monitored_entities(self):
        return 8  # an entity's z threshold 4.0, overwhelming from 6.0

    def judge(self, scope, first, last):
        return self.judgements[scope]


@pytest.mark.parametrize(
    ("model_actual", "material"), [(200, False), (300, True)], ids=["small part", "main part"]
)
def test_an_entity_is_its_own_incident_only_when_its_part_of_the_rise_beats_the_noise(
    model_actual, material
):
    # given the tenant 300 cents (3 noise spreads) above its expected 1,000 on X, and a
    # model above its expected 100 by z 5 (beyond its threshold, not overwhelming)
    tenant = expectation.judge_window(actual=[1300], expected=[1000], spread=0.1)
    model = expectation.judge_window(
        actual=[model_actual], expected=[100], spread=(model_actual - 100) / 500
    )
    context = FixedJudgements({("tenant", None): tenant, ("model", "m-small"): model})
    anomaly = Anomaly(
        anomaly_type=AnomalyType.STATISTICAL_OUTLIER,
        entity_type="model",
        entity_id="m-small",
        anomaly_date=X,
        breach_count=1,
    )

    # when the gate judges the model's outlier
    verdict = anomaly_verdict(anomaly, context)

    # then +100 cents (a third of the rise, 1 spread) is not what moved the bill, +200 is
    assert verdict.material is material
    if not material:
        assert verdict.reason.startswith("its part of the tenant's rise is within its noise")


# --- Suppression by feedback ------------------------------------------------------------


def false_alarm(tenant, changes: dict[date, dict[str, float]], last: date) -> Incident:
    """The export spike on X, detected and labelled NO; `changes` are the days after it."""
    spend_history(tenant, last=last, changes=scaled(3, X) | changes)
    (incident,) = detect(tenant, day_after(X))["incidents"]
    return incident_label(incident=incident, actor="user:op", label="NO")


def test_a_false_alarm_silences_the_same_change_within_the_suppression_period(tenant):
    # given the export spike labelled a false alarm, and the same spike three days later
    again = day_after(X, 3)
    labelled = false_alarm(tenant, scaled(3, again), last=again)

    # when detection runs the day after
    result = detect(tenant, day_after(again))

    # then the change is suppressed and no incident opens
    assert result["suppressed"] >= 1
    assert result["opened"] == 0
    assert list(Incident.objects.filter(tenant=tenant)) == [labelled]


def test_twice_the_impact_of_a_false_alarm_opens_a_new_incident(tenant):
    # given the export spike labelled a false alarm, then export at six times three days later
    again = day_after(X, 3)
    labelled = false_alarm(tenant, scaled(6, again), last=again)

    # when detection runs the day after
    result = detect(tenant, day_after(again))

    # then the bigger change (2.5 times the labelled impact) is a new incident
    assert result["opened"] == 1
    (incident,) = result["incidents"]
    assert incident.pk != labelled.pk
    assert incident.impact_cents >= 2 * labelled.impact_cents


def test_after_the_suppression_period_the_same_change_opens_again(tenant):
    # given a suppression period of 5 days and the labelled spike repeated 6 days later
    DetectionSettings.objects.create(tenant=tenant, suppression_days=5)
    again = day_after(X, 6)
    labelled = false_alarm(tenant, scaled(3, again), last=again)

    # when detection runs the day after
    result = detect(tenant, day_after(again))

    # then the same change is an incident again
    assert (result["opened"], result["suppressed"]) == (1, 0)
    (incident,) = result["incidents"]
    assert incident.pk != labelled.pk
    assert (incident.started_on, incident.last_seen_on) == (again, again)


# --- Planned activity -------------------------------------------------------------------

PLANNED_DAYS = (X, day_after(X), day_after(X, 2))


def detect_planned_days(tenant) -> list[dict]:
    return [detect(tenant, day_after(day)) for day in PLANNED_DAYS]


def test_a_tenant_plan_covers_the_increase_it_announced(tenant):
    # given a plan of x3 for three days on which the tenant spends 2.5 times as much
    PlannedActivityFactory(tenant=tenant, starts_on=X, ends_on=PLANNED_DAYS[-1], expected_factor=3)
    spend_history(
        tenant, last=PLANNED_DAYS[-1], changes=scaled(2.5, *PLANNED_DAYS, feature=EVERY_FEATURE)
    )

    # when detection runs each day after
    results = detect_planned_days(tenant)

    # then nothing opens
    assert [r["opened"] for r in results] == [0, 0, 0]
    assert not Incident.objects.filter(tenant=tenant).exists()


def test_spend_beyond_the_plan_opens_an_incident(tenant):
    # given the same plan of x3 and five times the spend
    PlannedActivityFactory(tenant=tenant, starts_on=X, ends_on=PLANNED_DAYS[-1], expected_factor=3)
    spend_history(
        tenant, last=PLANNED_DAYS[-1], changes=scaled(5, *PLANNED_DAYS, feature=EVERY_FEATURE)
    )

    # when detection runs each day after
    results = detect_planned_days(tenant)

    # then the first day opens an incident for the overshoot (+67 % over the plan), which the
    # next days join
    assert [r["opened"] for r in results] == [1, 0, 0]
    (opened,) = results[0]["incidents"]
    assert opened.impact_pct == pytest.approx(100 * (5 / 3 - 1), abs=5)
    (incident,) = Incident.objects.filter(tenant=tenant)
    assert incident.started_on == X


def test_a_feature_plan_keeps_the_tenant_quiet_too(tenant):
    # given export planned at x3 for three days, on which it triples
    PlannedActivityFactory(
        tenant=tenant,
        starts_on=X,
        ends_on=PLANNED_DAYS[-1],
        entity_type="feature",
        entity_id="export",
        expected_factor=3,
    )
    spend_history(tenant, last=PLANNED_DAYS[-1], changes=scaled(3, *PLANNED_DAYS))

    # when detection runs each day after
    results = detect_planned_days(tenant)

    # then neither the feature nor the tenant is an outlier, and nothing opens
    raised = scopes(a for r in results for a in r["anomalies"])
    assert ("tenant", None) not in raised
    assert ("feature", "export") not in raised
    assert not Incident.objects.filter(tenant=tenant).exists()


# --- Incident numbers -------------------------------------------------------------------


def test_a_drift_raised_at_midnight_does_not_count_the_unspent_day_against_the_incident(tenant):
    # given the tenant at five times its spend for three days, detected each day after at
    # 00:00, when the new day has no spend yet; the third run also raises a drift dated today
    days = (X, day_after(X), day_after(X, 2))
    spend_history(tenant, last=days[-1], changes=scaled(5, *days, feature=EVERY_FEATURE))
    for day in days:
        result = detect(tenant, day_after(day), hour=0)
    assert {a.anomaly_type for a in result["anomalies"]} >= {AnomalyType.SUSTAINED_DRIFT}

    # when the incident's numbers are compared with its three complete days
    (incident,) = Incident.objects.filter(tenant=tenant)
    complete = DetectionContext(tenant=tenant, as_of=day_after(days[-1])).judge(
        ("tenant", None), X, days[-1]
    )

    # then the day that has only just begun is not judged as a full day with nothing spent
    assert incident.impact_cents == pytest.approx(complete.impact, rel=0.01)


# --- Organic change ---------------------------------------------------------------------


@pytest.mark.parametrize("growth", [0.01, 0.0], ids=["one-percent-a-day", "weekly-seasonality"])
def test_steady_growth_and_weekly_seasonality_open_no_incident(tenant, growth):
    # given nine weeks of spend growing by `growth` a day, weekends at 60 %
    last = day_after(X, 24)
    spend_history(tenant, first=last - timedelta(days=62), last=last, growth=growth)

    # when the last three weeks are replayed day by day
    results = [detect(tenant, day_after(last - timedelta(days=n))) for n in range(20, -1, -1)]

    # then no day opens an incident
    assert sum(r["opened"] for r in results) == 0
    assert not Incident.objects.filter(tenant=tenant).exists()


# --- Idempotency ------------------------------------------------------------------------


def test_detecting_the_same_day_twice_leaves_the_same_incident(tenant):
    # given the export spike, detected once
    spend_history(tenant, last=X, changes=scaled(3, X))
    (incident,) = detect(tenant, day_after(X))["incidents"]
    before = snapshot(incident)

    # when the same day is detected again, later that morning
    result = detect(tenant, day_after(X), hour=8)

    # then it is the same incident with the same numbers
    assert result["opened"] == 0
    assert [i.pk for i in result["incidents"]] == [incident.pk]
    assert snapshot(incident) == before
    assert Incident.objects.filter(tenant=tenant).count() == 1


@pytest.mark.django_db(transaction=True)
def test_side_by_side_detections_leave_one_incident():
    # given a tenant with the export spike
    tenant = TenantFactory(slug="side-by-side-incidents")
    spend_history(tenant, last=X, changes=scaled(3, X))
    errors = []

    def run():
        try:
            anomalies_detect(tenant=tenant)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    # when two detections of the same day run at the same time
    with time_machine.travel(utc(2026, 3, 4, 6), tick=False):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # then both succeed and there is one incident holding every anomaly
    assert errors == []
    (incident,) = Incident.objects.filter(tenant=tenant)
    assert members(incident) == set(
        Anomaly.objects.filter(tenant=tenant).values_list("pk", flat=True)
    )


# --- Lifecycle --------------------------------------------------------------------------


def test_resolving_an_incident_resolves_its_open_anomalies(tenant):
    # given a detected incident one of whose anomalies an operator already dismissed
    spend_history(tenant, last=X, changes=scaled(3, X))
    (incident,) = detect(tenant, day_after(X))["incidents"]
    dismissed, *others = incident.anomalies.order_by("pk")
    anomaly_resolve(anomaly=dismissed, actor="user:a", resolution="dismissed", notes="noise")

    # when the incident is resolved
    incident_resolve(incident=incident, actor="user:op", resolution="resolved", notes="fixed")

    # then its open anomalies are resolved with it and the dismissed one stays as it was
    assert incident.status == AnomalyStatus.RESOLVED
    assert {
        (a.status, a.resolved_by, a.resolution_notes)
        for a in Anomaly.objects.filter(pk__in=[o.pk for o in others])
    } == {(AnomalyStatus.RESOLVED, "user:op", "fixed")}
    dismissed.refresh_from_db()
    assert (dismissed.status, dismissed.resolution_notes) == (AnomalyStatus.DISMISSED, "noise")


def test_an_anomaly_joining_a_resolved_incident_takes_its_status(tenant):
    # given the export spike on X, detected and resolved, and again the day after
    spend_history(tenant, last=day_after(X), changes=scaled(3, X, day_after(X)))
    (incident,) = detect(tenant, day_after(X))["incidents"]
    incident_resolve(incident=incident, actor="user:op", resolution="resolved", notes="fixed")

    # when detection runs on the next day
    result = detect(tenant, day_after(X, 2))

    # then the new anomalies join the resolved incident, resolved like it
    assert result["opened"] == 0
    assert Incident.objects.filter(tenant=tenant).count() == 1
    joined = Anomaly.objects.filter(pk__in=[a.pk for a in result["anomalies"]])
    assert {(a.incident_id, a.status, a.resolved_by) for a in joined} == {
        (incident.pk, AnomalyStatus.RESOLVED, "user:op")
    }
    incident.refresh_from_db()
    assert (incident.status, incident.last_seen_on) == (AnomalyStatus.RESOLVED, day_after(X))


def test_bulk_acknowledge_leaves_the_anomalies_of_a_closed_incident_alone(tenant):
    # given two incidents, the first one resolved
    later = day_after(X, 5)
    spend_history(tenant, last=later, changes=scaled(3, X, later))
    (closed,) = detect(tenant, day_after(X))["incidents"]
    (still_open,) = detect(tenant, day_after(later))["incidents"]
    incident_resolve(incident=closed, actor="user:op", resolution="resolved")

    # when both are acknowledged at once
    counts = incidents_acknowledge(
        incidents=Incident.objects.filter(tenant=tenant), actor="user:bulk"
    )

    # then only the open one and its anomalies move
    assert counts == {"acknowledged": 1, "unchanged": 0, "conflicts": 1}
    assert set(closed.anomalies.values_list("status", "acknowledged_by")) == {
        (AnomalyStatus.RESOLVED, "")
    }
    assert set(still_open.anomalies.values_list("status", "acknowledged_by")) == {
        (AnomalyStatus.ACKNOWLEDGED, "user:bulk")
    }


def test_a_new_incident_is_signalled_on_commit(
    tenant, signals_received, django_capture_on_commit_callbacks
):
    # given the export spike
    spend_history(tenant, last=X, changes=scaled(3, X))

    # when detection opens an incident
    with django_capture_on_commit_callbacks(execute=True):
        (incident,) = detect(tenant, day_after(X))["incidents"]
        assert signals_received == []  # nothing before the commit

    # then it is announced once
    assert signals_received == [("opened", incident.pk)]


def test_a_rising_severity_is_signalled_as_an_escalation(
    tenant, signals_received, django_capture_on_commit_callbacks
):
    # given a MEDIUM incident for +30 % on X, and export at eleven times on the day after
    spend_history(tenant, last=day_after(X), changes=scaled(3, X) | scaled(11, day_after(X)))
    (incident,) = detect(tenant, day_after(X))["incidents"]
    assert incident.severity == "MEDIUM"

    # when detection runs on the next day
    with django_capture_on_commit_callbacks(execute=True):
        detect(tenant, day_after(X, 2))

    # then the incident is more severe and that is announced
    incident.refresh_from_db()
    assert incident.severity in ("HIGH", "CRITICAL")
    assert signals_received == [("escalated", incident.pk)]


def test_resolving_is_signalled_on_commit(
    tenant, signals_received, django_capture_on_commit_callbacks
):
    # given a detected incident
    spend_history(tenant, last=X, changes=scaled(3, X))
    (incident,) = detect(tenant, day_after(X))["incidents"]

    # when it is resolved
    with django_capture_on_commit_callbacks(execute=True):
        incident_resolve(incident=incident, actor="user:op", resolution="resolved")
        assert signals_received == []

    # then
    assert signals_received == [("resolved", incident.pk)]


# --- Dry run ----------------------------------------------------------------------------


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Anomaly, Incident, BreachHistory, DriftTracking)
    }


def test_dry_run_answers_the_incident_and_writes_nothing(
    tenant, signals_received, django_capture_on_commit_callbacks
):
    # given the tenant at three times its spend for three days; late on the third day the
    # spike rule would record a breach and the drift rule start a streak
    days = (X, day_after(X), day_after(X, 2))
    spend_history(tenant, last=days[-1], changes=scaled(3, *days, feature=EVERY_FEATURE))

    # when a dry run is made then
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        result = detect(tenant, days[-1], hour=23, dry_run=True)

    # then it answers the incident with its members, and nothing was written or sent
    assert result["dry_run"] is True
    assert result["opened"] == 1
    (incident,) = result["incidents"]
    assert {a.pk for a in incident.members} == {a.pk for a in result["anomalies"]}
    assert {a.anomaly_date for a in incident.members} == {days[1]}
    assert row_counts() == {"Anomaly": 0, "Incident": 0, "BreachHistory": 0, "DriftTracking": 0}
    assert callbacks == []
    assert signals_received == []
