"""The pure detection engine: no database, plain numbers in and out."""

from datetime import date, timedelta

import pytest

from analytics.services import detection as engine
from analytics.services.detection import DriftState, WindowStats

MONDAY = date(2026, 3, 2)


@pytest.mark.parametrize(
    ("pct", "severity"),
    [(0, "LOW"), (24.99, "LOW"), (25, "MEDIUM"), (39.99, "MEDIUM"), (40, "HIGH"), (500, "HIGH")],
)
def test_classify_bands(pct, severity):
    assert engine.classify(pct) == severity


@pytest.mark.parametrize(
    ("deviation", "severity"),
    [
        (200, "LOW"),
        (299.9, "LOW"),
        (300, "MEDIUM"),
        (400, "HIGH"),
        (499, "HIGH"),
        (500, "CRITICAL"),
    ],
)
def test_snapshot_severity_bands(deviation, severity):
    assert engine.snapshot_severity(deviation) == severity


@pytest.mark.parametrize(
    ("spend", "expected"),
    [
        (79, None),
        (80, ("BUDGET_WARNING", "MEDIUM", 80.0)),
        (85, ("BUDGET_WARNING", "MEDIUM", 80.0)),
        (90, ("BUDGET_WARNING", "HIGH", 80.0)),
        (100, ("BUDGET_EXCEEDED", "HIGH", 100.0)),
        (250, ("BUDGET_EXCEEDED", "HIGH", 100.0)),
    ],
)
def test_budget_verdict_bands(spend, expected):
    verdict = engine.budget_verdict(spend=spend, limit=100, warn_threshold_pct=80)

    if expected is None:
        assert verdict is None
    else:
        assert (verdict.anomaly_type, verdict.severity, verdict.threshold_pct) == expected
        assert verdict.usage_pct == spend


def test_consecutive_streak_stops_at_a_gap_and_at_the_cap():
    d = MONDAY
    days = lambda *offsets: {d - timedelta(days=o) for o in offsets}  # noqa: E731

    assert engine.consecutive_streak(days(0, 1), d) == 2
    assert engine.consecutive_streak(days(0, 2, 3), d) == 1
    assert engine.consecutive_streak(days(1, 2), d) == 0
    assert engine.consecutive_streak(days(*range(10)), d) == 7


def test_spike_breach_averages_over_active_days_and_needs_the_ratio():
    # 1300 cents over 10 active days is a 130-cent baseline; 182 is exactly 1.4 times it
    breach = engine.spike_breach(baseline_spend=1300.0, baseline_days=10, today_spend=182.0)
    assert (breach.baseline, breach.today) == (130.0, 182.0)
    assert breach.deviation_pct == pytest.approx(40.0)

    assert engine.spike_breach(baseline_spend=1300.0, baseline_days=10, today_spend=181.0) is None


@pytest.mark.parametrize(
    "baseline_spend, baseline_days, today_spend",
    [(None, 0, 500.0), (0.0, 3, 500.0), (300.0, 0, 500.0), (300.0, 3, None), (300.0, 3, 0.0)],
)
def test_spike_breach_needs_a_baseline_and_spend_today(baseline_spend, baseline_days, today_spend):
    assert (
        engine.spike_breach(
            baseline_spend=baseline_spend, baseline_days=baseline_days, today_spend=today_spend
        )
        is None
    )


def test_drift_reading_spreads_the_rolling_week_over_seven_days():
    # 1750 cents in the week (some days quiet) against 200 a day over 15 active days
    reading = engine.drift_reading(rolling_spend=1750.0, baseline_spend=3000.0, baseline_days=15)
    assert (reading.rolling, reading.baseline, reading.ratio) == (250.0, 200.0, 1.25)
    assert reading.drift_pct == pytest.approx(25.0)

    quiet = engine.drift_reading(rolling_spend=None, baseline_spend=3000.0, baseline_days=15)
    assert (quiet.rolling, quiet.ratio) == (0.0, 0.0)


def test_drift_reading_needs_a_baseline():
    assert engine.drift_reading(rolling_spend=700.0, baseline_spend=None, baseline_days=0) is None
    assert engine.drift_reading(rolling_spend=700.0, baseline_spend=0.0, baseline_days=4) is None


def test_drift_step_counts_consecutive_days_and_restarts_after_a_gap():
    d = MONDAY
    start = engine.drift_step(None, as_of=d, ratio=1.3)
    assert start == DriftState(True, 1, d, d)

    same_day = engine.drift_step(start, as_of=d, ratio=1.5)
    assert same_day == start

    next_day = engine.drift_step(start, as_of=d + timedelta(days=1), ratio=1.3)
    assert next_day.drift_days_count == 2
    assert next_day.first_drift_date == d

    after_gap = engine.drift_step(next_day, as_of=d + timedelta(days=3), ratio=1.3)
    assert after_gap == DriftState(True, 1, d + timedelta(days=3), d + timedelta(days=3))


def test_drift_step_below_ratio_deactivates_and_never_rewinds():
    d = MONDAY
    active = DriftState(True, 4, d - timedelta(days=3), d)

    assert engine.drift_step(None, as_of=d, ratio=1.1) is None
    assert engine.drift_step(active, as_of=d - timedelta(days=1), ratio=2.0) is None
    stopped = engine.drift_step(active, as_of=d + timedelta(days=1), ratio=1.1)
    assert stopped.is_active is False
    assert stopped.last_check_date == d + timedelta(days=1)


@pytest.mark.parametrize(
    ("current", "previous", "is_tenant", "cause"),
    [
        # worked example: 4 retries of 40 today vs 2 of 20 yesterday
        (WindowStats(40, 4, 100.0), WindowStats(20, 2, 100.0), False, "RETRY_LOOP"),
        (WindowStats(40, 3, 100.0), WindowStats(20, 2, 100.0), False, "TRAFFIC_GROWTH"),
        (WindowStats(10, 0, 140.0), WindowStats(10, 0, 100.0), False, "PROMPT_GROWTH"),
        (WindowStats(10, 0, 100.0, 100.0, 70.0), WindowStats(10, 0, 100.0), True, "FEATURE_SURGE"),
        (WindowStats(10, 0, 100.0, 100.0, 70.0), WindowStats(10, 0, 100.0), False, "UNKNOWN"),
        (WindowStats(5, 0, None), WindowStats(0, 0, None), False, "UNKNOWN"),
    ],
)
def test_derive_cause_first_match_wins(current, previous, is_tenant, cause):
    assert engine.derive_cause(current=current, previous=previous, is_tenant=is_tenant) == cause


def test_contributor_share_rounds_to_four_places():
    assert engine.contributor_share(100, 150) == 0.6667
    assert engine.contributor_share(0, 0) == 0.0


def test_entity_label():
    assert engine.entity_label("tenant", None) == "Tenant"
    assert engine.entity_label("feature", "chat") == "Feature chat"


@pytest.mark.parametrize(
    ("impact_pct", "impact_cents", "severity"),
    [
        (10, 5_000, "LOW"),
        (25, 5_000, "MEDIUM"),
        (50, 5_000, "HIGH"),
        (100, 5_000, "CRITICAL"),
        (None, 5_000, "CRITICAL"),
        (300, 999, "MEDIUM"),  # a big % of little money is capped below ten floors
        (30, 999, "MEDIUM"),
        (10, 999, "LOW"),
    ],
)
def test_incident_severity_bands_and_money_cap(impact_pct, impact_cents, severity):
    assert (
        engine.incident_severity(
            impact_pct=impact_pct, impact_cents=impact_cents, min_impact_cents=100
        )
        == severity
    )


def test_incident_title_in_dollars():
    title = engine.incident_title(
        kind="spike",
        scope_label="Feature search",
        impact_cents=4210,
        impact_pct=85.04,
        started_on=date(2026, 3, 3),
        last_seen_on=date(2026, 3, 4),
    )
    assert title == (
        "Spike: Feature search spent $42.10 (+85.0%) more than expected on 2026-03-03 to 2026-03-04"
    )
