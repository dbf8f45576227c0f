"""The seasonal, trend-aware expectation: pure numbers, no database."""

import math
import random
import statistics
from datetime import date, timedelta

import pytest

from analytics.services import expectation
from analytics.services.expectation import EntityChange, Plan

LAST = date(2026, 3, 1)  # a Sunday: the next day judged is a Monday


def history(days: int, level=lambda i, day: 1000.0) -> list[float]:
    first = LAST - timedelta(days=days - 1)
    return [level(i, first + timedelta(days=i)) for i in range(days)]


def weekly(weekday: float, weekend: float):
    return lambda i, day: weekend if day.weekday() >= 5 else weekday


def test_a_constant_history_expects_its_level_and_has_no_noise():
    model = expectation.fit(history(56), last_day=LAST)

    assert model.expected(LAST + timedelta(days=1)) == pytest.approx(1000)
    assert model.spread == 0
    above = expectation.judge_window(actual=[1200], expected=[1000], spread=model.spread)
    level = expectation.judge_window(actual=[1000], expected=[1000], spread=model.spread)
    assert math.isinf(above.z_score)
    assert level.z_score == 0


def test_the_weekday_profile_is_learnt_after_three_weeks():
    model = expectation.fit(history(28, weekly(1000, 400)), last_day=LAST)

    monday, saturday = LAST + timedelta(days=1), LAST + timedelta(days=6)
    assert model.expected(monday) == pytest.approx(1000, rel=0.01)
    assert model.expected(saturday) == pytest.approx(400, rel=0.01)


def test_two_weeks_are_judged_without_a_weekday_profile():
    model = expectation.fit(history(14, weekly(1000, 400)), last_day=LAST)

    assert model.weekday_factors == (1.0,) * 7
    assert expectation.fit(history(13), last_day=LAST) is None


def test_steady_growth_is_expected_not_alarming():
    # given 1 %/day organic growth with weekends at half the weekdays
    growth = lambda i, day: 1000 * 1.01**i * (0.5 if day.weekday() >= 5 else 1)  # noqa: E731

    model = expectation.fit(history(56, growth), last_day=LAST)

    # then the next weekday is expected within 2 % of where the trend has got to
    next_day = LAST + timedelta(days=1)
    assert model.expected(next_day) == pytest.approx(1000 * 1.01**56, rel=0.02)
    assert model.trend_pct_per_day == pytest.approx(1.0, abs=0.3)


def test_only_the_last_eight_weeks_are_used():
    model = expectation.fit([99999.0] * 30 + history(56), last_day=LAST)

    assert model.history_days == 56
    assert model.expected(LAST + timedelta(days=1)) == pytest.approx(1000)


def noisy(rng: random.Random, days: int, noise: float, weekend: float, growth: float):
    return history(
        days,
        lambda i, day: (
            10_000
            * (1 + growth) ** i
            * (weekend if day.weekday() >= 5 else 1)
            * max(0.05, rng.gauss(1, noise))
        ),
    )


@pytest.mark.parametrize("noise", [0.05, 0.10, 0.15])
@pytest.mark.parametrize("days", [28, 56])
def test_the_spread_matches_the_real_noise(noise, days):
    """The z score of a new ordinary day has a standard deviation close to 1."""
    rng = random.Random(days * 100 + int(noise * 100))
    z_scores = []
    for _ in range(150):
        series = noisy(rng, days + 1, noise, rng.choice([0.3, 0.6, 1.0]), rng.choice([0, 0.01]))
        model = expectation.fit(series[:-1], last_day=LAST)
        next_day = LAST + timedelta(days=1)
        judged = expectation.judge_window(
            actual=[series[-1]], expected=[model.expected(next_day)], spread=model.spread
        )
        z_scores.append(judged.z_score)

    assert 0.75 <= statistics.pstdev(z_scores) <= 1.3
    assert sum(z > 3.5 for z in z_scores) <= 3  # about 2 in 10,000 for normal noise


def test_quiet_weekdays_with_few_calls_get_their_own_wider_spread():
    # given weekdays at 10,000 cents with 5 % noise and weekends at 3,000 cents with 25 %
    # (a handful of calls on a weekend is relatively noisier)
    rng = random.Random(5)
    series = history(
        56,
        lambda i, day: (
            3000 * max(0.05, rng.gauss(1, 0.25))
            if day.weekday() >= 5
            else 10_000 * rng.gauss(1, 0.05)
        ),
    )

    # when the model is fitted
    model = expectation.fit(series, last_day=LAST)

    # then a Saturday is judged against the weekends' own noise, a Monday against the pooled one
    saturday, monday = LAST + timedelta(days=6), LAST + timedelta(days=1)
    assert model.spread_on(monday) == model.spread
    assert model.spread_on(saturday) > 2 * model.spread
    # (widened, like every spread, for the error of the weekday factors and the few residuals)
    assert 0.25 <= model.spread_on(saturday) <= 0.5
    # and a doubled Saturday is within that noise, while a doubled Monday is not
    for day, beyond in ((saturday, False), (monday, True)):
        expected = model.expected(day)
        judged = expectation.judge_window(
            actual=[expected * 2],
            expected=[expected],
            spread=model.spread,
            spreads=[model.spread_on(day)],
        )
        assert (judged.z_score > 3.5) is beyond


def test_a_flat_week_has_one_spread():
    rng = random.Random(6)
    model = expectation.fit(history(56, lambda i, day: 1000 * rng.gauss(1, 0.1)), last_day=LAST)

    spreads = {model.spread_on(LAST + timedelta(days=n)) for n in range(1, 8)}

    # the weekdays below the average day differ from the others by noise alone
    assert max(spreads) <= 1.5 * model.spread
    assert min(spreads) == model.spread


def test_a_real_jump_clears_the_threshold_over_noise():
    rng = random.Random(3)
    series = noisy(rng, 56, 0.10, 0.5, 0.0)
    model = expectation.fit(series, last_day=LAST)
    monday = LAST + timedelta(days=1)

    judged = expectation.judge_window(
        actual=[model.expected(monday) * 1.6],
        expected=[model.expected(monday)],
        spread=model.spread,
    )

    assert judged.z_score > 3.5
    assert judged.impact_pct == pytest.approx(60)
    assert judged.passes(min_cents=100, min_pct=20, z_threshold=3.5)
    assert not judged.passes(min_cents=100, min_pct=80, z_threshold=3.5)
    assert not judged.passes(min_cents=10_000, min_pct=20, z_threshold=3.5)


def test_a_window_adds_up_its_days_and_their_noise():
    judged = expectation.judge_window(actual=[130, 130, 130], expected=[100, 100, 100], spread=0.1)

    assert judged.impact == 90
    assert judged.impact_pct == pytest.approx(30)
    # the noise of three days is 0.1 * sqrt(3 * 100^2)
    assert judged.z_score == pytest.approx(90 / (0.1 * math.sqrt(30_000)))


def test_nothing_expected_has_no_percentage():
    judged = expectation.judge_window(actual=[500], expected=[0], spread=0.2)

    assert judged.impact_pct is None
    assert math.isinf(judged.z_score)
    assert judged.passes(min_cents=100, min_pct=1000, z_threshold=3.5)


# --- Planned activity ---------------------------------------------------------------------

DAY = date(2026, 3, 10)
EXPECTED = {("tenant", None): 1000.0, ("feature", "launch"): 100.0, ("user", "u1"): 300.0}


def test_a_plan_outside_its_window_changes_nothing():
    plans = [Plan(DAY + timedelta(days=1), DAY + timedelta(days=3), "tenant", None, 2.0)]

    assert expectation.planned_expected(
        scope=("tenant", None), day=DAY, expected=EXPECTED, plans=plans
    ) == pytest.approx(1000)


def test_a_tenant_plan_scales_every_scope():
    plans = [Plan(DAY, DAY, "tenant", None, 2.0)]

    for scope, value in EXPECTED.items():
        planned = expectation.planned_expected(scope=scope, day=DAY, expected=EXPECTED, plans=plans)
        assert planned == pytest.approx(2 * value)


def test_an_entity_plan_scales_it_and_adds_its_extra_to_the_tenant():
    plans = [Plan(DAY, DAY, "feature", "launch", 3.0)]

    feature = expectation.planned_expected(
        scope=("feature", "launch"), day=DAY, expected=EXPECTED, plans=plans
    )
    tenant = expectation.planned_expected(
        scope=("tenant", None), day=DAY, expected=EXPECTED, plans=plans
    )
    user = expectation.planned_expected(
        scope=("user", "u1"), day=DAY, expected=EXPECTED, plans=plans
    )

    assert feature == pytest.approx(300)
    assert tenant == pytest.approx(1000 + 200)  # the launch is planned to add 200
    assert user == pytest.approx(300)


# --- Root causes --------------------------------------------------------------------------


def test_root_causes_rank_by_share_of_the_increase_not_by_spend():
    # given a feature that doubled inside a model that every feature uses
    changes = [
        EntityChange("model", "gpt", expected=5000, actual=6000),  # carries the increase too
        EntityChange("feature", "search", expected=1000, actual=2000),
        EntityChange("feature", "chat", expected=4000, actual=4000),  # the biggest spender
        EntityChange("user", "u1", expected=2500, actual=3000),
        EntityChange("user", "u2", expected=2500, actual=3000),
        EntityChange("user", "u3", expected=10, actual=5),  # went down: not a cause
    ]

    causes = expectation.rank_root_causes(changes, total_increase=1000)

    assert [(c["entity_type"], c["entity_id"]) for c in causes] == [
        ("feature", "search"),
        ("model", "gpt"),
        ("user", "u1"),
        ("user", "u2"),
    ]
    assert causes[0] == {
        "entity_type": "feature",
        "entity_id": "search",
        "expected_cents": 1000,
        "actual_cents": 2000,
        "delta_cents": 1000,
        "share": 1.0,
    }
    assert causes[2]["share"] == 0.5


def test_the_recent_level_follows_a_moved_level_not_one_unusual_day():
    # a drift: three days at 1.6, 1.5 and 1.7 times the model
    assert expectation.recent_level_factor(
        actual=[160, 150, 170], expected=[100, 100, 100]
    ) == pytest.approx(1.6)
    # one spike among ordinary days does not lift it, and running low never lowers it
    assert expectation.recent_level_factor(actual=[100, 400, 98], expected=[100, 100, 100]) == 1
    assert expectation.recent_level_factor(actual=[50, 60, 70], expected=[100, 100, 100]) == 1
    # days with nothing expected say nothing
    assert expectation.recent_level_factor(actual=[5, 0], expected=[0, 0]) == 1


def test_no_increase_has_no_root_causes():
    changes = [EntityChange("feature", "a", expected=10, actual=20)]

    assert expectation.rank_root_causes(changes, total_increase=0) == []
