import logging
from datetime import UTC, datetime

import pytest

from analytics.hashing import short_hash
from costsim.services.canary_engine import (
    NO_SAMPLES_REASON,
    SKIPPED_REASON,
    SYNTHETIC_SAMPLES,
    CanarySample,
    SampleOutcome,
    canary_failure_reasons,
    canary_report,
    sample_shortfall,
    samples_evaluate,
    skipped_report,
)
from costsim.services.distances import distribution_distances
from costsim.services.drift import Comparison, ComparisonDetails

STARTED = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _outcome(index, verdict, drift_score, v1_cost=100, v2_cost=100):
    comparison = Comparison(
        verdict=verdict,
        v1_cost_cents=v1_cost,
        v2_cost_cents=v2_cost,
        cost_delta_cents=v2_cost - v1_cost,
        cost_delta_pct=round(abs(v2_cost - v1_cost) / max(v1_cost, 1), 4),
        v1_duration_ms=500,
        v2_duration_ms=500,
        duration_delta_ms=0,
        v1_feasible=True,
        v2_feasible=True,
        feasibility_match=True,
        drift_score=drift_score,
        details=ComparisonDetails("feasible", "success", 0.85, 1, 1),
    )
    return SampleOutcome(f"s{index}", f"hash{index}", f"out{index}", comparison)


def _report(
    outcomes, *, total_samples=None, drift_threshold=0.2, min_samples=1, source="provenance"
):
    # The gate tests below judge a handful of outcomes, so their floor is 1; the floor's
    # own tests pass the real one.
    return canary_report(
        outcomes,
        run_id="0123456789ab",
        timestamp=STARTED,
        total_samples=len(outcomes) if total_samples is None else total_samples,
        drift_threshold=drift_threshold,
        sample_source=source,
        duration_ms=42,
        min_samples=min_samples,
    )


def test_spec_gate_example_passes():
    # when: 100 comparisons, 2 major, KL 0.1, 2 outliers, threshold 0.2
    reasons = canary_failure_reasons(
        evaluated=100,
        kl_divergence=0.1,
        outlier_count=2,
        major_drift_samples=2,
        drift_threshold=0.2,
    )

    # then
    assert reasons == []


def test_every_gate_reports_its_reason_in_order():
    # when
    reasons = canary_failure_reasons(
        evaluated=100,
        kl_divergence=0.25,
        outlier_count=6,
        major_drift_samples=11,
        drift_threshold=0.2,
    )

    # then
    assert reasons == [
        "KL divergence 0.2500 > 0.2",
        "Outlier percentage 6.00% > 5.00%",
        "Major drift samples 11.00% > 10%",
    ]


def test_gates_are_strict():
    # when: exactly on every limit
    reasons = canary_failure_reasons(
        evaluated=100,
        kl_divergence=0.2,
        outlier_count=5,
        major_drift_samples=10,
        drift_threshold=0.2,
    )

    # then
    assert reasons == []


def test_report_of_the_gate_example_counts_verdicts_and_passes():
    # given: 90 match, 8 minor, 2 mismatches that are also the outliers
    outcomes = (
        [_outcome(i, "match", 0.0) for i in range(90)]
        + [_outcome(90 + i, "minor_drift", 0.12) for i in range(8)]
        + [_outcome(98 + i, "mismatch", 0.6) for i in range(2)]
    )

    # when
    report = _report(outcomes)

    # then
    assert report.status == "pass"
    assert report.passed is True
    assert report.failure_reasons == []
    assert (report.matching_samples, report.minor_drift_samples) == (90, 8)
    assert report.major_drift_samples == 2
    assert report.outlier_count == 2
    assert report.kl_divergence == 0.0
    assert len(report.comparisons) == 100
    assert [d["sample_id"] for d in report.diffs] == ["s98", "s99"]


def test_major_drift_and_mismatch_both_count_as_major_and_make_diffs():
    # given
    outcomes = [
        _outcome(0, "match", 0.0),
        _outcome(1, "major_drift", 0.3, v1_cost=10, v2_cost=15),
        _outcome(2, "mismatch", 0.4, v1_cost=10, v2_cost=10),
    ]

    # when
    report = _report(outcomes)

    # then
    assert report.major_drift_samples == 2
    assert report.outlier_count == 0
    assert report.diffs == [
        {
            "sample_id": "s1",
            "input_hash": "hash1",
            "v2_output_hash": "out1",
            "cost_diff": 5,
            "duration_diff": 0,
            "diff_summary": "Drift: 0.3000, Cost delta: 5",
        },
        {
            "sample_id": "s2",
            "input_hash": "hash2",
            "v2_output_hash": "out2",
            "cost_diff": 0,
            "duration_diff": 0,
            "diff_summary": "Drift: 0.4000, Cost delta: 0",
        },
    ]
    assert report.status == "fail"
    assert report.failure_reasons == ["Major drift samples 66.67% > 10%"]


def test_median_and_p90_pick_elements_of_the_sorted_absolute_deltas():
    # given: |deltas| 0..9, given in reverse and with signs mixed
    outcomes = [
        _outcome(i, "match", 0.0, v1_cost=100, v2_cost=100 + (d if d % 2 else -d))
        for i, d in enumerate(range(9, -1, -1))
    ]

    # when
    report = _report(outcomes)

    # then
    assert report.median_cost_diff == 5.0
    assert report.p90_cost_diff == 9.0
    assert isinstance(report.median_cost_diff, float)


def test_kl_and_js_are_computed_from_v1_and_v2_costs_at_four_decimals():
    # given: V1 all 100, V2 spread (the worked distance example)
    outcomes = [
        _outcome(i, "match", 0.0, v1_cost=100, v2_cost=v2)
        for i, v2 in enumerate([50, 150, 75, 125, 100])
    ]

    # when
    report = _report(outcomes, drift_threshold=2)

    # then
    assert report.kl_divergence == 1.6094
    assert report.js_distance == 0.781
    assert report.drift_threshold == 2.0
    assert "KL divergence" not in " ".join(report.failure_reasons)


def test_kl_gate_uses_the_threshold_text_of_the_float():
    # given
    outcomes = [_outcome(i, "match", 0.0, v2_cost=v2) for i, v2 in enumerate([50, 150])]

    # when
    report = _report(outcomes, drift_threshold=0.2)

    # then
    assert report.failure_reasons[0].startswith("KL divergence ")
    assert report.failure_reasons[0].endswith(" > 0.2")


def test_no_evaluated_sample_is_an_error():
    # when
    report = _report([], total_samples=3)

    # then
    assert report.status == "error"
    assert report.passed is False
    assert report.failure_reasons == [NO_SAMPLES_REASON]
    assert report.failure_reasons == ["No samples evaluated"]
    assert report.total_samples == 3
    assert report.evaluated_samples == 0
    assert (report.median_cost_diff, report.p90_cost_diff) == (0.0, 0.0)
    assert (report.kl_divergence, report.js_distance) == (None, None)
    assert report.comparisons == []
    assert report.diffs == []


def test_report_dict_has_every_field_and_lists_can_leave_samples_out():
    # given
    report = _report([_outcome(0, "match", 0.0)])

    # when
    full = report.to_dict()
    listed = report.to_dict(include_samples=False)

    # then
    assert list(full) == [
        "run_id",
        "timestamp",
        "status",
        "total_samples",
        "evaluated_samples",
        "min_samples",
        "matching_samples",
        "minor_drift_samples",
        "major_drift_samples",
        "median_cost_diff",
        "p90_cost_diff",
        "kl_divergence",
        "js_distance",
        "outlier_count",
        "passed",
        "failure_reasons",
        "sample_source",
        "drift_threshold",
        "duration_ms",
        "comparisons",
        "diffs",
    ]
    assert full["timestamp"] == "2026-03-02T10:00:00Z"
    assert full["comparisons"][0]["sample_id"] == "s0"
    assert full["comparisons"][0]["verdict"] == "match"
    assert full["comparisons"][0]["details"]["v2_status"] == "success"
    assert "comparisons" not in listed
    assert "diffs" not in listed


def test_skipped_report_passes_without_samples():
    # when
    report = skipped_report(run_id="0123456789ab", timestamp=STARTED, drift_threshold=0.2)

    # then
    assert report.to_dict() == {
        "run_id": "0123456789ab",
        "timestamp": "2026-03-02T10:00:00Z",
        "status": "skipped",
        "total_samples": 0,
        "evaluated_samples": 0,
        "min_samples": None,
        "matching_samples": 0,
        "minor_drift_samples": 0,
        "major_drift_samples": 0,
        "median_cost_diff": 0.0,
        "p90_cost_diff": 0.0,
        "kl_divergence": 0.0,
        "js_distance": 0.0,
        "outlier_count": 0,
        "passed": True,
        "failure_reasons": [SKIPPED_REASON],
        "sample_source": None,
        "drift_threshold": 0.2,
        "duration_ms": 0,
        "comparisons": [],
        "diffs": [],
    }
    assert SKIPPED_REASON == "Skipped: another instance is the leader"


def test_synthetic_samples_are_the_four_of_the_spec():
    # then
    assert [s.sample_id for s in SYNTHETIC_SAMPLES] == [
        "synthetic_1",
        "synthetic_2",
        "synthetic_3",
        "synthetic_4",
    ]
    assert [s.budget_cents for s in SYNTHETIC_SAMPLES] == [100, 100, 100, 5]
    assert [len(s.plan) for s in SYNTHETIC_SAMPLES] == [1, 1, 3, 2]
    assert SYNTHETIC_SAMPLES[2].plan[1] == {
        "skill": "json_transform",
        "params": {"query": "$.data"},
    }
    assert SYNTHETIC_SAMPLES[3].plan[0]["params"]["prompt"] == "A" * 5000
    assert SYNTHETIC_SAMPLES[3].plan[1]["params"]["prompt"] == "B" * 5000
    for sample in SYNTHETIC_SAMPLES:
        assert sample.allowed_skills is None
        assert sample.input_hash == short_hash(
            {"plan": sample.plan, "budget_cents": sample.budget_cents}
        )
    # synthetic_1 is the reference hashing example
    assert SYNTHETIC_SAMPLES[0].input_hash == "7d2218dea0c346ce"


def test_synthetic_canary_fails_on_the_budget_sample():
    # when
    outcomes = samples_evaluate(SYNTHETIC_SAMPLES)
    report = _report(outcomes)

    # then: synthetic_4 costs 10 cents in V1 and 25 in V2 - a mismatch and an outlier
    assert [o.comparison.verdict for o in outcomes] == [
        "match",
        "minor_drift",
        "minor_drift",
        "mismatch",
    ]
    assert report.status == "fail"
    assert report.outlier_count == 1
    assert report.major_drift_samples == 1
    assert report.failure_reasons[1:] == [
        "Outlier percentage 25.00% > 5.00%",
        "Major drift samples 25.00% > 10%",
    ]
    assert report.diffs[0]["diff_summary"] == "Drift: 0.6000, Cost delta: 15"
    assert report.diffs[0]["v2_output_hash"] == outcomes[3].v2_output_hash


def test_a_sample_that_raises_is_logged_and_dropped(caplog):
    # given: a step without a skill cannot be estimated
    broken = CanarySample("broken", "deadbeefdeadbeef", [{"params": {}}], 100)
    samples = [SYNTHETIC_SAMPLES[0], broken]

    # when
    with caplog.at_level(logging.ERROR):
        outcomes = samples_evaluate(samples)
    report = _report(outcomes, total_samples=len(samples))

    # then
    assert [o.sample_id for o in outcomes] == ["synthetic_1"]
    assert "broken" in caplog.text
    assert report.total_samples == 2
    assert len(report.comparisons) == 1
    assert report.status == "pass"


def test_samples_respect_their_allowlist():
    # given
    sample = CanarySample(
        "allow", "0" * 16, [{"skill": "fs_write", "params": {}}], 100, ["http_call"]
    )

    # when
    (outcome,) = samples_evaluate([sample])

    # then
    assert outcome.comparison.details.v1_status == "permission_denied"
    assert outcome.comparison.details.v2_status == "error"
    assert outcome.comparison.verdict == "match"


# Too few samples to decide -----------------------------------------------------------


def test_one_sample_is_insufficient_data_not_a_kl_of_23():
    # given the fresh-install case: one real input whose V2 cost differs from V1's
    outcomes = [_outcome(0, "mismatch", 0.6, v1_cost=10, v2_cost=25)]

    # when
    report = _report(outcomes, min_samples=100)

    # then the histogram distance would have been 23 and failed the canary ...
    assert round(distribution_distances([10], [25])[0], 4) == 23.0259
    # ... but one sample decides nothing, and the report says what a verdict needs
    assert report.status == "insufficient_data"
    assert report.passed is False
    assert (report.kl_divergence, report.js_distance) == (None, None)
    assert (report.evaluated_samples, report.min_samples) == (1, 100)
    assert report.failure_reasons == [
        "Insufficient data: 1 samples evaluated, judging V2 needs 100"
    ]
    # what was evaluated is still shown
    assert report.major_drift_samples == 1
    assert report.median_cost_diff == 15.0
    assert [d["sample_id"] for d in report.diffs] == ["s0"]


def test_the_floor_is_inclusive():
    # given 100 outcomes on which V1 and V2 agree
    outcomes = [_outcome(i, "match", 0.0, v1_cost=10 + i, v2_cost=10 + i) for i in range(100)]

    # when
    below = _report(outcomes[:99], min_samples=100)
    at = _report(outcomes, min_samples=100)

    # then
    assert below.status == "insufficient_data"
    assert below.kl_divergence is None
    assert at.status == "pass"
    assert (at.kl_divergence, at.failure_reasons) == (0.0, [])


def test_synthetic_samples_never_judge_v2_whatever_the_floor():
    # given the four synthetic samples, which fail the gates by their own numbers
    outcomes = samples_evaluate(SYNTHETIC_SAMPLES)
    assert _report(outcomes, min_samples=1).status == "fail"

    # when they are what the canary ran on
    report = _report(outcomes, min_samples=1, source="synthetic")

    # then
    assert report.status == "insufficient_data"
    assert report.kl_divergence is None
    assert report.failure_reasons == [
        "Insufficient data: synthetic samples only check that V2 runs; judging V2 needs "
        "1 evaluated samples of recent V2 traffic, found 0"
    ]


@pytest.mark.parametrize(
    ("source", "taken", "evaluated", "expected"),
    [
        # enough evaluated: the gates decide
        ("provenance", 100, 100, None),
        ("provenance", 120, 100, None),
        # too few exist
        (
            "provenance",
            3,
            3,
            ("insufficient_data", ["Insufficient data: 3 samples evaluated, judging V2 needs 100"]),
        ),
        # too few exist and they all raise: still too few to say anything
        (
            "provenance",
            2,
            0,
            (
                "insufficient_data",
                [
                    "Insufficient data: 0 samples evaluated, judging V2 needs 100",
                    "2 of 2 samples could not be evaluated",
                ],
            ),
        ),
        # enough taken, a minority raised: insufficient, not a failure
        (
            "provenance",
            100,
            60,
            (
                "insufficient_data",
                [
                    "Insufficient data: 60 samples evaluated, judging V2 needs 100",
                    "40 of 100 samples could not be evaluated",
                ],
            ),
        ),
        # enough taken, most raised: the estimators are broken on real data
        ("provenance", 100, 40, ("error", ["60 of 100 samples could not be evaluated"])),
        ("provenance", 100, 0, ("error", [NO_SAMPLES_REASON])),
    ],
)
def test_sample_shortfall(source, taken, evaluated, expected):
    # when
    result = sample_shortfall(
        sample_source=source, total_samples=taken, evaluated=evaluated, min_samples=100
    )

    # then
    assert result == expected


def test_the_default_floor_is_where_one_stray_sample_stops_failing_the_kl_gate():
    # given n costs where V1 has one sample alone in the top bin and V2 moved it down a bin:
    # the smallest possible drift a histogram can see, and the one the floor is derived from
    def kl_of_one_stray_sample(n):
        v1 = [1] * (n - 1) + [100]
        v2 = [1] * (n - 1) + [90]
        return distribution_distances(v1, v2)[0]

    # the defaults of COSTSIM_MIN_DRIFT_SAMPLES and COSTSIM_CANARY_DRIFT_THRESHOLD
    floor, gate = 100, 0.2

    # then at the floor that one sample cannot fail the canary on its own, just below it can
    assert kl_of_one_stray_sample(floor) <= gate
    assert kl_of_one_stray_sample(92) > gate
