import logging
from datetime import UTC, datetime

from analytics.hashing import short_hash
from costsim.services.canary_engine import (
    NO_SAMPLES_REASON,
    SKIPPED_REASON,
    SYNTHETIC_SAMPLES,
    CanarySample,
    SampleOutcome,
    canary_failure_reasons,
    canary_report,
    samples_evaluate,
    skipped_report,
)
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


def _report(outcomes, *, total_samples=None, drift_threshold=0.2):
    return canary_report(
        outcomes,
        run_id="0123456789ab",
        timestamp=STARTED,
        total_samples=len(outcomes) if total_samples is None else total_samples,
        drift_threshold=drift_threshold,
        sample_source="provenance",
        duration_ms=42,
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
    # given: V1 all 100, V2 spread (the spec's distance example)
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
    assert (report.median_cost_diff, report.p90_cost_diff) == (0.0, 0.0)
    assert (report.kl_divergence, report.js_distance) == (0.0, 0.0)
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
    # synthetic_1 is the spec's hashing example
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
