"""Anomaly detection against PostgreSQL: the rules of docs/detection.md and worked examples."""

import random
import threading
from datetime import date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from analytics import metrics
from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    BreachHistory,
    BudgetType,
    DetectionSettings,
    DriftTracking,
    EntityType,
    Incident,
)
from analytics.services.anomalies import anomalies_detect, anomalies_detect_active_tenants
from analytics.services.anomaly_lifecycle import anomaly_resolve
from analytics.signals import high_anomaly_detected
from tests.analytics.factories import BreachHistoryFactory
from tests.factories import BudgetFactory, CostRecordFactory, TenantFactory, utc

D = date(2026, 3, 16)  # a Monday
NOW = utc(2026, 3, 16, 12)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def at(day: date, hour: int = 9, minute: int = 0) -> datetime:
    return utc(day.year, day.month, day.day, hour, minute)


def days_before(n: int, base: date = D) -> date:
    return base - timedelta(days=n)


def spend(tenant, when: datetime, cents, **fields):
    return CostRecordFactory(
        tenant=tenant, created_at=when, cost_cents=Decimal(str(cents)), **fields
    )


def of_type(result: dict, anomaly_type: str) -> list[Anomaly]:
    return [a for a in result["anomalies"] if a.anomaly_type == anomaly_type]


def spike_history(tenant, **fields):
    """100 ¢ on three active days of D - 14 ... D - 2: a baseline of 100 ¢ per active day."""
    for n in (10, 8, 5):
        spend(tenant, at(days_before(n)), 100, **fields)


# --- Rule 1: ABSOLUTE_SPIKE --------------------------------------------------------------


def test_spike_first_breach_day_writes_history_but_no_anomaly(tenant, frozen):
    # given a baseline of 100 ¢ per active day and 150 ¢ today
    spike_history(tenant)
    spend(tenant, at(D), 150)

    # when detection runs
    result = anomalies_detect(tenant=tenant)

    # then the breach is recorded for today but one day is not a spike yet
    breach = BreachHistory.objects.get(tenant=tenant)
    assert (breach.entity_type, breach.entity_id, breach.breach_date) == ("tenant", None, D)
    assert breach.deviation_pct == pytest.approx(50.0)
    assert breach.current_value_cents == 150
    assert breach.baseline_value_cents == 100
    assert of_type(result, AnomalyType.ABSOLUTE_SPIKE) == []


def test_spike_with_a_breach_yesterday_is_an_anomaly(tenant, frozen):
    # given the worked example plus a breach row for D - 1
    spike_history(tenant)
    spend(tenant, at(D), 150)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))

    # when detection runs
    result = anomalies_detect(tenant=tenant)

    # then a HIGH spike with a streak of two is raised
    (anomaly,) = of_type(result, AnomalyType.ABSOLUTE_SPIKE)
    assert anomaly.severity == "HIGH"
    assert anomaly.status == AnomalyStatus.OPEN
    assert (anomaly.entity_type, anomaly.entity_id, anomaly.anomaly_date) == ("tenant", None, D)
    assert anomaly.breach_count == 2
    assert anomaly.threshold_pct == 140
    assert anomaly.current_value_cents == 150
    assert anomaly.expected_value_cents == 100
    assert anomaly.deviation_pct == pytest.approx(50.0)
    assert anomaly.message == "Tenant spending 50.0% above baseline for 2 consecutive days"
    assert anomaly.metadata == {
        "lookback_days": 14,
        "baseline_daily_avg": 100.0,
        "consecutive_breaches": 2,
    }
    assert result["detected"] == result["created"] == 1


def test_spike_streak_is_broken_by_a_gap(tenant, frozen):
    # given breaches on D - 2 and D - 3 but none on D - 1
    spike_history(tenant)
    spend(tenant, at(D), 150)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(2))
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(3))

    result = anomalies_detect(tenant=tenant)

    assert of_type(result, AnomalyType.ABSOLUTE_SPIKE) == []


def test_spike_below_ratio_writes_nothing(tenant, frozen):
    # given today at 1.3x the baseline, with yesterday breached
    spike_history(tenant)
    spend(tenant, at(D), 130)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))

    result = anomalies_detect(tenant=tenant)

    assert of_type(result, AnomalyType.ABSOLUTE_SPIKE) == []
    assert not BreachHistory.objects.filter(breach_date=D).exists()


def test_spike_judges_users_and_features_then_the_tenant(tenant, frozen):
    # given user u1 spiking, user u2 flat and feature chat spiking, all with yesterday breached
    spike_history(tenant, user_id="u2")
    spike_history(tenant, user_id="u1", feature_tag="chat")
    spend(tenant, at(D), 300, user_id="u1", feature_tag="chat")
    spend(tenant, at(D), 100, user_id="u2")
    for entity_type, entity_id in (("user", "u1"), ("user", "u2"), ("feature", "chat")):
        BreachHistoryFactory(
            tenant=tenant,
            entity_type=entity_type,
            entity_id=entity_id,
            breach_date=days_before(1),
        )

    # when detection runs
    result = anomalies_detect(tenant=tenant)

    # then u1 and chat are spikes, in rule order; u2 (ratio 1.0) and the tenant (no streak)
    # are not
    spikes = of_type(result, AnomalyType.ABSOLUTE_SPIKE)
    assert [(a.entity_type, a.entity_id) for a in spikes] == [("user", "u1"), ("feature", "chat")]
    assert spikes[0].message == "User u1 spending 200.0% above baseline for 2 consecutive days"
    assert spikes[1].message.startswith("Feature chat spending 200.0%")


def test_past_as_of_ignores_records_after_that_day(tenant, frozen):
    # given a spike on D - 3 (with D - 4 breached) and more spend on later days
    day = days_before(3)
    for n in (10, 8):
        spend(tenant, at(days_before(n, day)), 100)
    spend(tenant, at(day, 23, 59), 150)
    spend(tenant, at(days_before(2)), 5000)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1, day))

    # when detection is backtested as of D - 3
    result = anomalies_detect(tenant=tenant, as_of=day)

    # then only that day's records count
    (anomaly,) = of_type(result, AnomalyType.ABSOLUTE_SPIKE)
    assert anomaly.anomaly_date == day
    assert anomaly.current_value_cents == 150


# --- Rule 2: SUSTAINED_DRIFT -------------------------------------------------------------


def drift_history(tenant, recent_cents: float):
    """100 ¢ every day until D - 8, then `recent_cents` every day up to today."""
    for n in range(40, 7, -1):
        spend(tenant, at(days_before(n)), 100)
    for n in range(7, -1, -1):
        spend(tenant, at(days_before(n), 6), recent_cents)


def test_drift_needs_three_consecutive_days(tenant, frozen):
    # given spend doubled for the last eight days
    drift_history(tenant, 200)

    # when detection runs as of D - 2, D - 1 and D
    runs = [anomalies_detect(tenant=tenant, as_of=days_before(n)) for n in (2, 1, 0)]

    # then only the third day raises SUSTAINED_DRIFT
    drifts = [of_type(result, AnomalyType.SUSTAINED_DRIFT) for result in runs]
    assert drifts[0] == [] and drifts[1] == []
    (anomaly,) = drifts[2]
    assert anomaly.breach_count == 3
    assert anomaly.anomaly_date == D
    assert anomaly.current_value_cents == pytest.approx(200.0)
    assert anomaly.expected_value_cents == pytest.approx(100.0)
    assert anomaly.deviation_pct == pytest.approx(100.0)
    assert anomaly.severity == "HIGH"
    assert anomaly.threshold_pct == 125
    assert anomaly.message == "Sustained drift detected: 100.0% above baseline for 3 days"
    assert anomaly.metadata == {
        "rolling_7d_avg": pytest.approx(200.0),
        "baseline_avg": pytest.approx(100.0),
        "drift_days": 3,
    }
    tracking = DriftTracking.objects.get(tenant=tenant)
    assert (tracking.drift_days_count, tracking.first_drift_date) == (3, days_before(2))


def test_drift_severity_follows_the_bands(tenant, frozen):
    # given spend up by 30 % (ratio 1.3: MEDIUM)
    drift_history(tenant, 130)

    runs = [anomalies_detect(tenant=tenant, as_of=days_before(n)) for n in (2, 1, 0)]

    (anomaly,) = of_type(runs[2], AnomalyType.SUSTAINED_DRIFT)
    assert anomaly.severity == "MEDIUM"


def test_drift_same_day_rerun_and_older_as_of_leave_the_streak_alone(tenant, frozen):
    drift_history(tenant, 200)
    for n in (2, 1, 0):
        anomalies_detect(tenant=tenant, as_of=days_before(n))

    # when today runs again and an older day is replayed
    anomalies_detect(tenant=tenant)
    older = anomalies_detect(tenant=tenant, as_of=days_before(5))

    # then the streak is still three days and the replay emits no drift
    tracking = DriftTracking.objects.get(tenant=tenant)
    assert (tracking.drift_days_count, tracking.last_check_date) == (3, D)
    assert of_type(older, AnomalyType.SUSTAINED_DRIFT) == []


def test_drift_below_ratio_deactivates_the_tracking_row(tenant, frozen):
    # given an active drift streak
    drift_history(tenant, 200)
    anomalies_detect(tenant=tenant, as_of=days_before(1))
    assert DriftTracking.objects.get(tenant=tenant).is_active

    # when spend stops and detection runs nine days later (an empty rolling week)
    with time_machine.travel(NOW + timedelta(days=9), tick=False):
        anomalies_detect(tenant=tenant)

    # then the streak is over
    tracking = DriftTracking.objects.get(tenant=tenant)
    assert tracking.is_active is False
    assert tracking.last_check_date == D + timedelta(days=9)


# --- Rules 3/4: budgets ------------------------------------------------------------------


def test_budget_warning_example(tenant, frozen):
    # given a daily limit of 100 with warn 80 and 85 ¢ spent today
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100, warn_threshold_pct=80)
    spend(tenant, at(D, 8), 85, model="model-a")

    result = anomalies_detect(tenant=tenant)

    (anomaly,) = of_type(result, AnomalyType.BUDGET_WARNING)
    assert anomaly.severity == "MEDIUM"
    assert anomaly.deviation_pct == 85.0
    assert (anomaly.current_value_cents, anomaly.expected_value_cents) == (85.0, 100.0)
    assert anomaly.threshold_pct == 80
    assert anomaly.budget_id == budget.pk
    assert anomaly.budget_period == "daily"
    assert anomaly.derived_cause == "UNKNOWN"
    assert anomaly.message == "Daily budget WARNING for tenant: 85.0%"
    assert anomaly.metadata == {
        "period": "daily",
        "limit_cents": 100,
        "warn_threshold_pct": 80,
        # 85 ¢ in the 12 h since midnight: the last 15 ¢ take 12 h * 15/85, until 14:07:03.5
        "eta_exhausted_at": "2026-03-16T14:07:03Z",
    }
    assert {"dimension": "model", "key": "model-a", "cents": 85.0, "share": 1.0} in (
        anomaly.contributors
    )


def test_budget_exceeded_for_a_feature_records_when_it_ran_out(tenant, frozen):
    # given a feature budget of 100 a day, crossed by the 11:00 record
    BudgetFactory(
        tenant=tenant,
        budget_type=BudgetType.FEATURE,
        entity_id="chat",
        daily_limit_cents=100,
        monthly_limit_cents=10_000,
    )
    spend(tenant, at(D, 8), 60, feature_tag="chat")
    spend(tenant, at(D, 11), 60, feature_tag="chat")
    spend(tenant, at(D, 11), 500, feature_tag="search")

    result = anomalies_detect(tenant=tenant)

    # then the daily period is exceeded; the monthly one (120 of 10 000) is fine
    (anomaly,) = of_type(result, AnomalyType.BUDGET_EXCEEDED)
    assert (anomaly.entity_type, anomaly.entity_id) == ("feature", "chat")
    assert anomaly.severity == "HIGH"
    assert anomaly.deviation_pct == 120.0
    assert anomaly.threshold_pct == 100
    assert anomaly.message == "Daily budget EXCEEDED for feature 'chat': 120.0%"
    assert anomaly.metadata["eta_exhausted_at"] == "2026-03-16T11:00:00Z"
    # contributors stay inside the budget scope and skip its own dimension
    assert {c["dimension"] for c in anomaly.contributors} == {"model", "user"}
    assert of_type(result, AnomalyType.BUDGET_WARNING) == []


def test_budget_exhaustion_found_once_per_period_at_the_same_limit(tenant, frozen):
    # given a monthly budget exceeded on D - 1, whose anomaly recorded when it ran out
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=None, monthly_limit_cents=100)
    spend(tenant, at(days_before(1), 8), 150)
    with time_machine.travel(at(days_before(1), 12), tick=False):
        (first,) = of_type(anomalies_detect(tenant=tenant), AnomalyType.BUDGET_EXCEEDED)
    assert first.metadata["eta_exhausted_at"] == "2026-03-15T08:00:00Z"
    # (an instant only that earlier run could know, to tell reuse from recomputation)
    first.metadata["eta_exhausted_at"] = "2026-03-15T08:00:05Z"
    first.save()

    # when detection runs on D: the instant found earlier in the period is kept
    (today,) = of_type(anomalies_detect(tenant=tenant), AnomalyType.BUDGET_EXCEEDED)
    assert today.metadata["eta_exhausted_at"] == "2026-03-15T08:00:05Z"

    # and once the limit changes, it is found again from the records
    budget.monthly_limit_cents = 120
    budget.save()
    (again,) = of_type(anomalies_detect(tenant=tenant), AnomalyType.BUDGET_EXCEEDED)
    assert again.metadata["eta_exhausted_at"] == "2026-03-15T08:00:00Z"


def test_monthly_budget_warning_at_ninety_percent_is_high(tenant, frozen):
    BudgetFactory(tenant=tenant, daily_limit_cents=None, monthly_limit_cents=1000)
    spend(tenant, at(date(2026, 3, 2)), 900, user_id="u1")

    result = anomalies_detect(tenant=tenant)

    (anomaly,) = of_type(result, AnomalyType.BUDGET_WARNING)
    assert (anomaly.budget_period, anomaly.severity) == ("monthly", "HIGH")
    assert anomaly.message == "Monthly budget WARNING for tenant: 90.0%"


def test_inactive_budgets_are_ignored(tenant, frozen):
    BudgetFactory(tenant=tenant, daily_limit_cents=10, is_active=False)
    spend(tenant, at(D), 50)

    result = anomalies_detect(tenant=tenant)

    assert of_type(result, AnomalyType.BUDGET_EXCEEDED) == []


# --- Rule 5: STATISTICAL_OUTLIER ---------------------------------------------------------

E = date(2026, 3, 2)  # a Monday; detection as of the Tuesday after evaluates it
HISTORY_DAYS = 35
_RNG = random.Random(5)
NOISE = [1 + _RNG.uniform(-0.08, 0.08) for _ in range(HISTORY_DAYS)]


def statistical_history(tenant, value_on_e: float, rare_feature_days=(), days=HISTORY_DAYS):
    """Weekdays about 1000 cents, weekends about 400, +-8 % noise; `value_on_e` on day E."""
    first = E - timedelta(days=days)
    for offset in range(days):
        day = first + timedelta(days=offset)
        level = (400 if day.weekday() >= 5 else 1000) * NOISE[offset]
        if offset in rare_feature_days:
            spend(tenant, at(day), round(level - 50, 2), model="m1")
            spend(tenant, at(day, 10), 50, model="m1", feature_tag="rare")
        else:
            spend(tenant, at(day), round(level, 2), model="m1")
    spend(tenant, at(E), value_on_e - 500, model="m1")
    spend(tenant, at(E, 10), 500, model="m1", feature_tag="rare")


def detect_day_after_e(tenant) -> dict:
    with time_machine.travel(at(E + timedelta(days=1), 10), tick=False):
        return anomalies_detect(tenant=tenant)


def test_statistical_outlier_is_judged_against_the_seasonal_expectation(tenant):
    # given a noisy weekday-shaped history and a feature seen on only 3 history days
    statistical_history(tenant, 1600, rare_feature_days=(1, 9, 17))

    # when detection runs the next day
    result = detect_day_after_e(tenant)

    # then the tenant and its only model are outliers; the rare feature is not judged alone
    outliers = of_type(result, AnomalyType.STATISTICAL_OUTLIER)
    assert [(a.entity_type, a.entity_id) for a in outliers] == [
        ("tenant", None),
        ("model", "m1"),
    ]
    anomaly = outliers[0]
    assert anomaly.anomaly_date == E
    assert anomaly.current_value_cents == 1600
    # a Monday is expected at the weekday level, not at the week's average
    assert anomaly.expected_value_cents == pytest.approx(1000, rel=0.1)
    impact = 1600 - anomaly.expected_value_cents
    assert anomaly.deviation_pct == pytest.approx(impact / anomaly.expected_value_cents * 100)
    assert anomaly.severity == "HIGH"
    assert anomaly.threshold_pct == 20
    metadata = anomaly.metadata
    assert metadata["method"] == "seasonal_trend"
    assert metadata["z_score"] > 3.5
    assert 2 <= metadata["spread_pct"] <= 12  # the history's +-8 % noise
    assert metadata["impact_cents"] == pytest.approx(impact, abs=0.01)
    assert metadata["history_days"] == HISTORY_DAYS
    assert anomaly.message.startswith("Tenant spent 1600.00 cents on 2026-03-02 vs ")
    # contributors cover day E only
    assert anomaly.contributors[0] == {
        "dimension": "model",
        "key": "m1",
        "cents": 1600.0,
        "share": 1.0,
    }


def test_statistical_outlier_within_the_noise_is_not_raised(tenant):
    statistical_history(tenant, 1100)

    assert of_type(detect_day_after_e(tenant), AnomalyType.STATISTICAL_OUTLIER) == []


def test_statistical_rule_needs_min_history_days(tenant):
    # given 24 days of history: fewer than the default 28
    statistical_history(tenant, 1600, days=24)

    assert of_type(detect_day_after_e(tenant), AnomalyType.STATISTICAL_OUTLIER) == []

    # when the tenant lowers its minimum history, the next run judges the day
    DetectionSettings.objects.create(tenant=tenant, min_history_days=21)
    assert of_type(detect_day_after_e(tenant), AnomalyType.STATISTICAL_OUTLIER) != []


def test_statistical_rule_follows_the_tenant_z_threshold(tenant):
    statistical_history(tenant, 1600)
    DetectionSettings.objects.create(tenant=tenant, z_threshold=20)

    assert of_type(detect_day_after_e(tenant), AnomalyType.STATISTICAL_OUTLIER) == []


# --- Explanations ------------------------------------------------------------------------


def test_derived_cause_retry_loop_example(tenant, frozen):
    # given 40 requests with 4 retries today and 20 with 2 yesterday, on a spiking feature
    spend(tenant, at(days_before(5)), 20, feature_tag="chat")
    for n in range(20):
        spend(tenant, at(days_before(1)), 1, feature_tag="chat", is_retry=n < 2)
    for n in range(40):
        spend(tenant, at(D), 1, feature_tag="chat", is_retry=n < 4)
    BreachHistoryFactory(
        tenant=tenant, entity_type="feature", entity_id="chat", breach_date=days_before(1)
    )

    result = anomalies_detect(tenant=tenant)

    (anomaly,) = of_type(result, AnomalyType.ABSOLUTE_SPIKE)
    assert anomaly.entity_id == "chat"
    assert anomaly.derived_cause == "RETRY_LOOP"


def test_derived_cause_traffic_growth_and_prompt_growth(tenant, frozen):
    # given user u1 with twice yesterday's requests, user u2 with longer prompts
    spend(tenant, at(days_before(5)), 10, user_id="u1")
    spend(tenant, at(days_before(5)), 10, user_id="u2")
    for _ in range(2):
        spend(tenant, at(days_before(1)), 5, user_id="u1")
    for _ in range(4):
        spend(tenant, at(D), 5, user_id="u1")
    spend(tenant, at(days_before(1)), 10, user_id="u2", input_tokens=100)
    spend(tenant, at(D), 20, user_id="u2", input_tokens=200)
    for user in ("u1", "u2"):
        BreachHistoryFactory(
            tenant=tenant, entity_type="user", entity_id=user, breach_date=days_before(1)
        )

    result = anomalies_detect(tenant=tenant)

    causes = {a.entity_id: a.derived_cause for a in of_type(result, AnomalyType.ABSOLUTE_SPIKE)}
    assert causes == {"u1": "TRAFFIC_GROWTH", "u2": "PROMPT_GROWTH"}


def test_contributors_example(tenant, frozen):
    # given today's spend: model-a 120 (chat 100, search 20), model-b 30 (search 20, untagged 10)
    spend(tenant, at(days_before(5)), 50, model="model-a", feature_tag="chat")
    spend(tenant, at(D), 100, model="model-a", feature_tag="chat", user_id="ann")
    spend(tenant, at(D), 20, model="model-a", feature_tag="search", user_id="bob")
    spend(tenant, at(D), 20, model="model-b", feature_tag="search")
    spend(tenant, at(D), 10, model="model-b")
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))
    BreachHistoryFactory(
        tenant=tenant, entity_type="feature", entity_id="chat", breach_date=days_before(1)
    )

    result = anomalies_detect(tenant=tenant)

    spikes = {a.entity_type: a for a in of_type(result, AnomalyType.ABSOLUTE_SPIKE)}
    assert spikes["tenant"].contributors == [
        {"dimension": "model", "key": "model-a", "cents": 120.0, "share": 0.8},
        {"dimension": "model", "key": "model-b", "cents": 30.0, "share": 0.2},
        {"dimension": "feature", "key": "chat", "cents": 100.0, "share": 0.6667},
        {"dimension": "feature", "key": "search", "cents": 40.0, "share": 0.2667},
        {"dimension": "feature", "key": "untagged", "cents": 10.0, "share": 0.0667},
        {"dimension": "user", "key": "ann", "cents": 100.0, "share": 0.6667},
        {"dimension": "user", "key": "anonymous", "cents": 30.0, "share": 0.2},
        {"dimension": "user", "key": "bob", "cents": 20.0, "share": 0.1333},
    ]
    # the feature's own dimension is left out and the scope is the feature's records
    assert spikes["feature"].contributors == [
        {"dimension": "model", "key": "model-a", "cents": 100.0, "share": 1.0},
        {"dimension": "user", "key": "ann", "cents": 100.0, "share": 1.0},
    ]


def test_contributors_keep_the_top_three_with_ties_by_key(tenant, frozen):
    spend(tenant, at(days_before(5)), 10)
    for model, cents in (("d", 5), ("c", 5), ("b", 9), ("a", 1)):
        spend(tenant, at(D), cents, model=model)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))

    result = anomalies_detect(tenant=tenant)

    (anomaly,) = of_type(result, AnomalyType.ABSOLUTE_SPIKE)
    models = [c["key"] for c in anomaly.contributors if c["dimension"] == "model"]
    assert models == ["b", "c", "d"]


# --- Upsert, lifecycle on re-detection, signals, metrics ---------------------------------


def spike_scenario(tenant):
    spike_history(tenant)
    spend(tenant, at(D, 8), 150)
    BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))


def test_second_run_the_same_day_updates_instead_of_duplicating(tenant, frozen):
    spike_scenario(tenant)
    first = anomalies_detect(tenant=tenant)

    # when more spend arrives and detection runs again later that day
    spend(tenant, at(D, 10), 50)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        second = anomalies_detect(tenant=tenant)

    # then the same row is updated in place
    assert (first["created"], first["updated"]) == (1, 0)
    assert (second["created"], second["updated"], second["detected"]) == (0, 1, 1)
    anomaly = Anomaly.objects.get(tenant=tenant)
    assert anomaly.pk == first["anomalies"][0].pk
    assert anomaly.current_value_cents == 200
    assert anomaly.detected_at == NOW
    assert anomaly.last_detected_at == NOW + timedelta(hours=1)
    assert BreachHistory.objects.filter(tenant=tenant, breach_date=D).count() == 1


def test_re_detection_keeps_a_resolved_anomaly_resolved(tenant, frozen):
    spike_scenario(tenant)
    (anomaly,) = anomalies_detect(tenant=tenant)["anomalies"]
    anomaly_resolve(anomaly=anomaly, actor="user:op", resolution="resolved", notes="known")

    spend(tenant, at(D, 10), 100)
    (again,) = anomalies_detect(tenant=tenant)["anomalies"]

    assert again.pk == anomaly.pk
    assert again.status == AnomalyStatus.RESOLVED
    assert again.resolution_notes == "known"
    assert again.current_value_cents == 250
    assert again.deviation_pct == pytest.approx(150.0)


def test_anomalies_are_scoped_to_their_tenant(tenant, other_tenant, frozen):
    spike_scenario(tenant)
    spend(other_tenant, at(D), 10_000)

    result = anomalies_detect(tenant=other_tenant)

    assert result["detected"] == 0
    assert not Anomaly.objects.filter(tenant=other_tenant).exists()


def test_high_anomalies_are_signalled_on_commit(tenant, frozen, django_capture_on_commit_callbacks):
    spike_scenario(tenant)
    received = []

    def listener(sender, anomaly, created, **kwargs):
        received.append((sender, anomaly.anomaly_type, created))

    high_anomaly_detected.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            anomalies_detect(tenant=tenant)
            assert received == []  # nothing before the commit
        with django_capture_on_commit_callbacks(execute=True):
            anomalies_detect(tenant=tenant)
    finally:
        high_anomaly_detected.disconnect(listener)

    assert received == [
        (Anomaly, AnomalyType.ABSOLUTE_SPIKE, True),
        (Anomaly, AnomalyType.ABSOLUTE_SPIKE, False),
    ]


def test_created_anomalies_are_counted_once(tenant, frozen, django_capture_on_commit_callbacks):
    spike_scenario(tenant)
    counter = metrics.anomalies_created_total.labels(anomaly_type="ABSOLUTE_SPIKE", severity="HIGH")
    before = counter._value.get()

    with django_capture_on_commit_callbacks(execute=True):
        anomalies_detect(tenant=tenant)
        anomalies_detect(tenant=tenant)

    assert counter._value.get() == before + 1


@pytest.mark.django_db(transaction=True)
def test_side_by_side_runs_leave_one_row_per_natural_key():
    # given a tenant whose data raises a spike and a drift
    tenant = TenantFactory(slug="side-by-side")
    with time_machine.travel(NOW, tick=False):
        drift_history(tenant, 200)
        DriftTracking.objects.create(
            tenant=tenant,
            entity_type="tenant",
            is_active=True,
            drift_days_count=2,
            first_drift_date=days_before(2),
            last_check_date=days_before(1),
        )
        BreachHistoryFactory(tenant=tenant, breach_date=days_before(1))
        errors = []

        def run():
            try:
                anomalies_detect(tenant=tenant)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connection.close()

        # when two detections run at the same time
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # then both succeed, the streak advanced once and each anomaly exists once
    assert errors == []
    assert DriftTracking.objects.get(tenant=tenant).drift_days_count == 3
    keys = list(
        Anomaly.objects.filter(tenant=tenant).values_list(
            "anomaly_type", "entity_type", "entity_id", "anomaly_date"
        )
    )
    assert len(keys) == len(set(keys))
    assert (AnomalyType.SUSTAINED_DRIFT, "tenant", None, D) in keys


# --- Job and command ---------------------------------------------------------------------


def test_job_runs_active_tenants_and_isolates_failures(tenant, frozen, monkeypatch):
    # given two active tenants with a spike each and an inactive one
    healthy = TenantFactory(slug="healthy")
    sleeping = TenantFactory(slug="sleeping", is_active=False)
    for each in (tenant, healthy, sleeping):
        spike_scenario(each)
    from analytics.services import anomalies as service

    real = service.anomalies_detect

    def failing_for_acme(*, tenant, as_of=None):
        if tenant.slug == "acme":
            raise RuntimeError("boom")
        return real(tenant=tenant, as_of=as_of)

    monkeypatch.setattr(service, "anomalies_detect", failing_for_acme)
    failed = metrics.job_runs_total.labels(job="detect_anomalies", outcome="failed")
    before = failed._value.get()

    # when the job runs
    report = anomalies_detect_active_tenants()

    # then the healthy tenant still got its anomaly and the failure is counted
    assert (report.tenants, report.failed_tenants) == (2, ["acme"])
    assert report.totals == {
        "detected": 1,
        "created": 1,
        "updated": 0,
        "opened": 0,  # 50 cents over baseline: under the money floor
    }
    assert Anomaly.objects.filter(tenant=healthy).count() == 1
    assert not Anomaly.objects.filter(tenant__in=[tenant, sleeping]).exists()
    assert failed._value.get() == before + 1


def test_task_detects_for_active_tenants(tenant, frozen):
    from analytics.tasks import detect_anomalies_task

    spike_scenario(tenant)

    result = detect_anomalies_task.apply().get()

    assert result["totals"]["created"] == 1
    assert Anomaly.objects.filter(tenant=tenant, anomaly_date=D).exists()


def test_command_backtests_a_range_day_by_day(tenant, frozen):
    # given eight days of doubled spend
    drift_history(tenant, 200)
    out = StringIO()

    # when the last three days are backtested
    call_command(
        "detect_anomalies",
        "--tenant",
        "acme",
        "--since",
        days_before(2).isoformat(),
        "--until",
        D.isoformat(),
        stdout=out,
    )

    # then each day ran in order, printing progress, and the drift streak built up
    text = out.getvalue()
    assert text.index("2026-03-14") < text.index("2026-03-15") < text.index("2026-03-16")
    assert "acme" in text
    assert Anomaly.objects.filter(
        tenant=tenant, anomaly_type=AnomalyType.SUSTAINED_DRIFT, anomaly_date=D
    ).exists()
    assert DriftTracking.objects.get(tenant=tenant).drift_days_count == 3


def test_command_dry_run_backtests_and_writes_nothing(tenant, frozen):
    # given eight days of doubled spend
    drift_history(tenant, 200)
    out = StringIO()

    # when the last three days are backtested as a dry run
    call_command(
        "detect_anomalies",
        "--tenant",
        "acme",
        "--since",
        days_before(2).isoformat(),
        "--until",
        D.isoformat(),
        "--dry-run",
        stdout=out,
    )

    # then the streak built up within the run and its incident is reported ...
    text = out.getvalue()
    assert "Incidents that would be open or updated: 1" in text
    assert "Drift: Tenant spent $" in text
    assert text.rstrip().endswith("Dry run: nothing was written.")
    # ... and nothing was written
    for model in (Anomaly, BreachHistory, DriftTracking, Incident):
        assert not model.objects.exists(), model


def test_command_single_day_for_all_tenants(tenant, frozen):
    spike_scenario(tenant)
    out = StringIO()

    call_command("detect_anomalies", "--as-of", D.isoformat(), stdout=out)

    assert "1 created" in out.getvalue()
    assert Anomaly.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nope"], "Unknown tenant"),
        (["--as-of", "2026-13-01"], "YYYY-MM-DD"),
        (["--as-of", "2026-03-17"], "later than today"),
        (["--since", "2026-03-10"], "together"),
        (["--since", "2026-03-12", "--until", "2026-03-10"], "--since"),
        (["--as-of", "2026-03-10", "--since", "2026-03-10", "--until", "2026-03-11"], "either"),
    ],
)
def test_command_rejects_bad_input(tenant, frozen, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("detect_anomalies", *args, stdout=StringIO())
    assert not Anomaly.objects.exists()


def test_entity_type_vocabulary_is_stored(tenant, frozen):
    spike_scenario(tenant)
    (anomaly,) = anomalies_detect(tenant=tenant)["anomalies"]
    assert anomaly.entity_type == EntityType.TENANT
