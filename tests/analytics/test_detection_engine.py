"""The pure detection engine: no database, plain numbers in and out."""

import math
from datetime import date, timedelta

import pytest

from analytics.services import detection as engine
from analytics.services.detection import DriftState, WindowStats

MONDAY = date(2026, 3, 2)


def weekday_history(evaluated: date, shifts=(-100, 0, 0, 100)) -> list[float]:
    """28 days before `evaluated`: weekdays 1000, weekends 400, each week shifted."""
    first = evaluated - timedelta(days=28)
    history = []
    for offset in range(28):
        day = first + timedelta(days=offset)
        level = 400 if day.weekday() >= 5 else 1000
        history.append(float(level + shifts[offset // 7]))
    return history


@pytest.mark.parametrize(
    ("value", "z_score", "impact_pct", "is_anomaly", "severity"),
    [
        (1400, 5.396, 40.0, True, "HIGH"),
        (1300, 4.047, 30.0, True, "MEDIUM"),
        (1250, 3.3725, 25.0, False, "MEDIUM"),
    ],
)
def test_robust_outlier_matches_the_spec_example(value, z_score, impact_pct, is_anomaly, severity):
    # given the weekday-shaped history of the spec example
    history = weekday_history(MONDAY)

    # when a Monday is evaluated
    result = engine.robust_outlier(evaluated=MONDAY, value=value, history=history)

    # then the weekday median is the expected value and MAD is 50
    assert result.method == "mad"
    assert result.expected == 1000
    assert result.mad == 50
    assert round(result.z_score, 4) == z_score
    assert result.impact == value - 1000
    assert result.impact_pct == pytest.approx(impact_pct)
    assert result.is_anomaly is is_anomaly
    assert result.severity == severity


def test_robust_outlier_uses_the_weekday_of_the_evaluated_day():
    # given the same history, evaluated on a Saturday
    saturday = MONDAY + timedelta(days=5)
    history = weekday_history(saturday)

    # when the Saturday spends a weekday amount
    result = engine.robust_outlier(evaluated=saturday, value=1000, history=history)

    # then it is measured against the weekend median (400), not the weekday one
    assert result.expected == 400
    assert result.impact == 600
    assert result.is_anomaly


def test_robust_outlier_falls_back_to_mean_absolute_deviation():
    # given a flat history with a single deviating day: the median residual is 0
    history = [100.0] * 28
    history[3] = 380.0

    # when the evaluated day is well above the level
    result = engine.robust_outlier(evaluated=MONDAY, value=400, history=history)

    # then the MeanAD scale is used: 300 / (1.253314 * 10)
    assert result.method == "meanad"
    assert result.mad == 0
    assert result.mean_ad == pytest.approx(10.0)
    assert result.z_score == pytest.approx(300 / (1.253314 * 10))
    assert result.is_anomaly


def test_robust_outlier_on_a_constant_history_is_infinite_above_and_zero_otherwise():
    history = [200.0] * 28

    above = engine.robust_outlier(evaluated=MONDAY, value=500, history=history)
    level = engine.robust_outlier(evaluated=MONDAY, value=200, history=history)

    assert above.method == "constant"
    assert math.isinf(above.z_score)
    assert above.is_anomaly
    assert level.z_score == 0
    assert not level.is_anomaly


def test_robust_outlier_with_zero_expected_has_infinite_impact_pct():
    # given spend that used to happen only on other weekdays
    history = [0.0 if offset % 7 == 0 else 50.0 for offset in range(28)]

    # when the evaluated weekday (median 0) suddenly spends
    result = engine.robust_outlier(evaluated=MONDAY, value=300, history=history)

    # then the relative impact is infinite and the severity is HIGH
    assert result.expected == 0
    assert math.isinf(result.impact_pct)
    assert result.severity == "HIGH"
    assert engine.finite_or_none(result.impact_pct) is None


def test_robust_outlier_needs_an_absolute_impact_of_a_dollar():
    # given a tiny but steady spend
    history = [10.0] * 28
    history[0] = 11.0

    # when the day doubles: huge z, +100 %, but only 10 cents more
    result = engine.robust_outlier(evaluated=MONDAY, value=20, history=history)

    # then it is not an anomaly
    assert result.z_score > engine.OUTLIER_Z_THRESHOLD
    assert not result.is_anomaly


def test_robust_outlier_rejects_a_short_history():
    with pytest.raises(ValueError, match="28 days"):
        engine.robust_outlier(evaluated=MONDAY, value=1, history=[1.0] * 27)


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
        # spec example: 4 retries of 40 today vs 2 of 20 yesterday
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
