import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections, transaction
from prometheus_client import REGISTRY

from analytics.models import CostRecord, CostSnapshot, SnapshotStatus, SnapshotType
from analytics.services.ingest import cost_records_ingest
from tests.conftest import key_client
from tests.factories import CostRecordFactory, FeatureTagFactory, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/cost-records/"
NOW = utc(2026, 3, 2, 10, 30)


def record(**fields) -> dict:
    return {"model": "gpt-4o", "cost_cents": 1.5, **fields}


def post(client, records, **extra):
    return client.post(URL, {"records": records}, format="json", **extra)


def counts(response) -> dict[str, int]:
    body = response.json()
    return {"accepted": body["accepted"], "duplicates": body["duplicates"]}


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot(tenant, snapshot_type, period_start, status=SnapshotStatus.COMPLETE, stale=False):
    return CostSnapshot.objects.create(
        tenant=tenant,
        snapshot_type=snapshot_type,
        period_start=period_start,
        period_end=period_start + CostSnapshot.period_length(snapshot_type),
        status=status,
        is_stale=stale,
    )


# --- accepted batches -------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_batch_is_stored_with_defaults_and_receipt_time(api_client, tenant):
    # when
    response = post(
        api_client,
        [
            record(),
            record(
                idempotency_key="k-1",
                user_id="u-1",
                request_id="req-1",
                workflow_id="wf-1",
                run_id="run-1",
                skill_id="skill-1",
                provider="openai",
                input_tokens=120,
                output_tokens=30,
                cost_cents="0.000001",
                is_retry=True,
                created_at="2026-03-02T11:30:00+01:00",
            ),
        ],
    )
    # then
    assert response.status_code == 201
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "unclassified": {
            "count": 0,
            "reasons": {"unknown_feature_tag": 0, "inactive_feature_tag": 0},
            "unknown_feature_tags": [],
            "inactive_feature_tags": [],
        },
        "pricing": {"catalog": 0, "override": 0, "unpriced": 0, "unpriced_models": []},
    }
    bare = CostRecord.objects.get(tenant=tenant, idempotency_key=None)
    full = CostRecord.objects.get(tenant=tenant, idempotency_key="k-1")
    assert (bare.input_tokens, bare.output_tokens, bare.is_retry) == (0, 0, False)
    assert bare.created_at == NOW and bare.ingested_at == NOW
    assert bare.cost_cents == Decimal("1.5")
    assert full.created_at == utc(2026, 3, 2, 10, 30)
    assert full.cost_cents == Decimal("0.000001")
    assert (full.user_id, full.request_id, full.workflow_id) == ("u-1", "req-1", "wf-1")
    assert (full.run_id, full.skill_id, full.provider) == ("run-1", "skill-1", "openai")
    assert (full.input_tokens, full.output_tokens, full.is_retry) == (120, 30, True)


def test_spec_example_duplicates_in_batch_and_in_database(api_client, tenant):
    # given
    batch = [record(idempotency_key="a"), record(idempotency_key="a"), record()]
    # when
    first = post(api_client, batch)
    second = post(api_client, batch)
    # then
    assert first.status_code == second.status_code == 201
    assert counts(first) == {"accepted": 2, "duplicates": 1}
    assert counts(second) == {"accepted": 1, "duplicates": 2}
    assert CostRecord.objects.filter(tenant=tenant).count() == 3


def test_same_key_and_payload_in_the_batch_is_written_once(api_client, tenant):
    response = post(
        api_client,
        [record(idempotency_key="k", model="first"), record(idempotency_key="k", model="first")],
    )
    assert counts(response) == {"accepted": 1, "duplicates": 1}
    assert CostRecord.objects.get(tenant=tenant).model == "first"


def test_idempotency_keys_are_scoped_to_the_tenant(api_client, other_client, tenant, other_tenant):
    # when
    mine = post(api_client, [record(idempotency_key="shared")])
    theirs = post(other_client, [record(idempotency_key="shared")])
    # then
    assert mine.json()["accepted"] == theirs.json()["accepted"] == 1
    assert CostRecord.objects.filter(idempotency_key="shared").count() == 2


@pytest.mark.parametrize(
    "cost, stored",
    [
        (0, Decimal(0)),
        ("12.345678", Decimal("12.345678")),
        (12.345678, Decimal("12.345678")),
        ("1.5000000000", Decimal("1.5")),
        ("9999999.999999", Decimal("9999999.999999")),
        (10_000_000, Decimal(10_000_000)),
        ("1E+1", Decimal(10)),
        ("2.5e-5", Decimal("0.000025")),
    ],
)
def test_cost_is_stored_exactly(api_client, tenant, cost, stored):
    response = post(api_client, [record(cost_cents=cost)])
    assert response.status_code == 201
    assert CostRecord.objects.get(tenant=tenant).cost_cents == stored


def test_created_at_up_to_five_minutes_ahead_is_accepted(api_client):
    with time_machine.travel(NOW, tick=False):
        response = post(api_client, [record(created_at="2026-03-02T10:35:00Z")])
    assert response.status_code == 201


# --- rejected batches: every problem named, nothing written -----------------------------------


@pytest.mark.parametrize(
    "bad, field, reason",
    [
        (record(cost_cents="abc"), "cost_cents", "must be a number"),
        (record(cost_cents=[1]), "cost_cents", "must be a number"),
        (record(cost_cents=-1), "cost_cents", "must be greater than or equal to 0"),
        (record(cost_cents="1.1234567"), "cost_cents", "must have at most 6 decimal places"),
        (record(cost_cents=1e12), "cost_cents", "must be less than or equal to 10000000"),
        (record(cost_cents="10000000.000001"), "cost_cents", "must be less than or equal to"),
        (record(cost_cents=999999999999), "cost_cents", "must be less than or equal to"),
        (record(cost_cents="NaN"), "cost_cents", "must be a number"),
        (record(cost_cents=None), "cost_cents", "is required unless input_tokens or output"),
        ({"model": "gpt-4o"}, "cost_cents", "is required unless input_tokens or output"),
        ({"cost_cents": 1}, "model", "is required"),
        (record(model=None), "model", "may not be null"),
        (record(model=""), "model", "may not be blank"),
        (record(model="m" * 65), "model", "must be at most 64 characters"),
        (record(model=7), "model", "must be a string"),
        (record(model="a\x00b"), "model", "must not contain NUL characters"),
        (record(input_tokens=-1), "input_tokens", "must be greater than or equal to 0"),
        (record(output_tokens="5"), "output_tokens", "must be an integer"),
        (record(output_tokens=1.5), "output_tokens", "must be an integer"),
        (record(input_tokens=True), "input_tokens", "must be an integer"),
        (record(input_tokens=2**63), "input_tokens", "must be less than or equal to"),
        (
            record(input_tokens=1_000_000_001),
            "input_tokens",
            "must be less than or equal to 1000000000",
        ),
        (
            record(output_tokens=1_000_000_001),
            "output_tokens",
            "must be less than or equal to 1000000000",
        ),
        (record(is_retry="yes"), "is_retry", "must be a boolean"),
        (record(created_at="2026-03-02T10:00:00"), "created_at", "timezone is required"),
        (record(created_at="yesterday"), "created_at", "must be an ISO-8601 datetime"),
        (record(created_at=1700000000), "created_at", "must be an ISO-8601 datetime"),
        (
            record(created_at="2026-03-02T10:35:01Z"),
            "created_at",
            "must not be later than receipt time + 5 minutes",
        ),
        (record(colour="red"), "colour", "unknown field"),
        (record(idempotency_key="k" * 65), "idempotency_key", "must be at most 64 characters"),
        (record(feature_tag="f" * 129), "feature_tag", "must be at most 128 characters"),
        (record(user_id="u" * 65), "user_id", "must be at most 64 characters"),
        (record(provider=""), "provider", "may not be blank"),
    ],
)
def test_invalid_record_rejects_the_whole_batch(api_client, tenant, bad, field, reason):
    # given
    counted_before = counter(
        "analytics_ingest_batches_rejected_total", kind="cost_records", reason="validation"
    )
    # when
    with time_machine.travel(NOW, tick=False):
        response = post(api_client, [record(idempotency_key="fine"), bad])
    # then
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert reason in field_errors(response)[f"records[1].{field}"]
    assert CostRecord.objects.filter(tenant=tenant).count() == 0
    assert (
        counter("analytics_ingest_batches_rejected_total", kind="cost_records", reason="validation")
        == counted_before + 1
    )


def test_spec_example_reports_every_problem_of_the_batch(api_client, tenant):
    # given: records[1].cost_cents = -1 and records[4].model missing
    records = [record() for _ in range(5)]
    records[1]["cost_cents"] = -1
    del records[4]["model"]
    # when
    response = post(api_client, records)
    # then
    assert response.status_code == 400
    assert set(field_errors(response)) == {"records[1].cost_cents", "records[4].model"}
    assert CostRecord.objects.count() == 0


def test_lone_surrogate_is_rejected_but_other_unicode_is_stored(api_client, tenant):
    # given: "\ud800" is valid JSON but not storable text
    bad = '{"records": [{"model": "m", "cost_cents": 1, "user_id": "\\ud800"}]}'
    # when
    rejected = api_client.generic("POST", URL, bad, content_type="application/json")
    accepted = post(api_client, [record(user_id="Zoë 東京 🚀", model="m%s'\"")])
    # then
    assert rejected.status_code == 400
    assert field_errors(rejected) == {"records[0].user_id": "must be valid Unicode text"}
    assert accepted.status_code == 201
    stored = CostRecord.objects.get(tenant=tenant)
    assert (stored.user_id, stored.model) == ("Zoë 東京 🚀", "m%s'\"")


def test_item_that_is_not_an_object_is_named_by_index(api_client):
    response = post(api_client, [record(), "oops"])
    assert response.status_code == 400
    assert field_errors(response) == {"records[1]": "must be an object"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"records": []}, "records"),
        ({}, "records"),
        ({"records": {"model": "x"}}, "records"),
        ({"records": [record()], "extra": 1}, "extra"),
        ([record()], "non_field_errors"),
    ],
)
def test_malformed_envelope_is_400(api_client, body, field):
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in field_errors(response)
    assert CostRecord.objects.count() == 0


def test_more_than_1000_records_is_413(api_client):
    # given
    counted_before = counter(
        "analytics_ingest_batches_rejected_total", kind="cost_records", reason="too_large"
    )
    # when
    response = post(api_client, [record(cost_cents=1)] * 1001)
    # then
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert CostRecord.objects.count() == 0
    assert (
        counter("analytics_ingest_batches_rejected_total", kind="cost_records", reason="too_large")
        == counted_before + 1
    )


def test_exactly_1000_records_are_accepted(api_client, tenant):
    response = post(api_client, [record(cost_cents=1)] * 1000)
    assert response.status_code == 201
    assert CostRecord.objects.filter(tenant=tenant).count() == 1000


def test_body_above_one_mebibyte_is_413(api_client):
    # given: fewer than 1000 records, but each carries a long unknown field
    records = [record(padding="x" * 2000) for _ in range(600)]
    counted_before = counter(
        "analytics_ingest_batches_rejected_total", kind="cost_records", reason="too_large"
    )
    # when
    response = post(api_client, records)
    # then
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert CostRecord.objects.count() == 0
    assert (
        counter("analytics_ingest_batches_rejected_total", kind="cost_records", reason="too_large")
        == counted_before + 1
    )


def test_body_above_limit_is_413_even_without_the_middleware(api_client, settings):
    # given: a request that reaches the view without the Content-Length check
    settings.MIDDLEWARE = [
        name for name in settings.MIDDLEWARE if not name.endswith("ApiBodyLimitMiddleware")
    ]
    settings.API_MAX_BODY_BYTES = 1000
    # when
    response = post(api_client, [record(model="m" * 60) for _ in range(20)])
    # then
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert CostRecord.objects.count() == 0


def test_malformed_json_is_parse_error(api_client):
    response = api_client.generic("POST", URL, '{"records": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_nan_literal_is_parse_error(api_client):
    body = '{"records": [{"model": "m", "cost_cents": NaN}]}'
    response = api_client.generic("POST", URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"
    assert CostRecord.objects.count() == 0


def test_form_body_is_415(api_client):
    response = api_client.post(URL, {"records": "x"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


# --- feature tag normalisation ----------------------------------------------------------------


def test_feature_tags_that_are_not_active_tags_of_the_tenant_become_unclassified(
    api_client, tenant, other_tenant
):
    # given
    FeatureTagFactory(tenant=tenant, tag="chat")
    FeatureTagFactory(tenant=tenant, tag="retired", is_active=False)
    FeatureTagFactory(tenant=other_tenant, tag="theirs")
    sent = ["chat", "retired", "theirs", "typo", "unclassified", None, "Chat"]
    # when
    response = post(
        api_client, [record(idempotency_key=str(i), feature_tag=t) for i, t in enumerate(sent)]
    )
    # then
    assert response.status_code == 201
    stored = dict(
        CostRecord.objects.filter(tenant=tenant).values_list("idempotency_key", "feature_tag")
    )
    assert [stored[str(i)] for i in range(len(sent))] == [
        "chat",
        "unclassified",
        "unclassified",
        "unclassified",
        "unclassified",
        None,
        "unclassified",
    ]


# --- idempotency: the same payload is a duplicate, another payload a conflict -----------------


def conflict_counter() -> float:
    return counter(
        "analytics_ingest_batches_rejected_total", kind="cost_records", reason="conflict"
    )


def test_key_reused_with_another_payload_is_409_naming_it_and_writes_nothing(api_client, tenant):
    # given
    post(api_client, [record(idempotency_key="k", cost_cents=2)])
    counted_before = conflict_counter()
    # when
    response = post(
        api_client,
        [record(idempotency_key="fresh"), record(idempotency_key="k", cost_cents=99)],
    )
    # then
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert set(field_errors(response)) == {"records[1].idempotency_key"}
    reason = field_errors(response)["records[1].idempotency_key"]
    assert "'k'" in reason and "different payload" in reason
    stored = CostRecord.objects.get(tenant=tenant)
    assert (stored.idempotency_key, stored.cost_cents) == ("k", Decimal(2))
    assert conflict_counter() == counted_before + 1


def test_every_record_reusing_a_conflicting_key_is_named(api_client):
    # given
    post(api_client, [record(idempotency_key="a"), record(idempotency_key="b")])
    # when: b is sent twice with one new payload, a with its own
    response = post(
        api_client,
        [
            record(idempotency_key="b", model="other"),
            record(idempotency_key="a"),
            record(idempotency_key="b", model="other"),
        ],
    )
    # then
    assert response.status_code == 409
    assert set(field_errors(response)) == {
        "records[0].idempotency_key",
        "records[2].idempotency_key",
    }


def test_key_reused_in_the_batch_with_another_payload_is_409(api_client, tenant):
    # when
    response = post(
        api_client,
        [
            record(idempotency_key="k", model="first"),
            record(idempotency_key="k", model="first"),
            record(idempotency_key="k", model="second"),
        ],
    )
    # then
    assert response.status_code == 409
    assert field_errors(response) == {
        "records[2].idempotency_key": (
            "idempotency key 'k' is already used by records[0] of this batch with a different "
            "payload; resend the same payload to retry, or use a new key for a new record"
        )
    }
    assert not CostRecord.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize(
    "first, again",
    [
        # one value, two spellings
        (record(cost_cents="1.5"), record(cost_cents=Decimal("1.500000"))),
        (record(cost_cents=2), record(cost_cents="2.0")),
        (
            record(created_at="2026-03-02T11:30:00+01:00"),
            record(created_at="2026-03-02T10:30:00Z"),
        ),
        # documented defaults sent explicitly
        (
            record(),
            record(input_tokens=0, output_tokens=0, is_retry=False, user_id=None, provider=None),
        ),
    ],
)
def test_same_payload_spelled_differently_is_a_duplicate(api_client, tenant, first, again):
    # given
    with time_machine.travel(NOW, tick=False):
        post(api_client, [{**first, "idempotency_key": "k"}])
        # when
        response = post(api_client, [{**again, "idempotency_key": "k"}])
    # then
    assert response.status_code == 201
    assert counts(response) == {"accepted": 0, "duplicates": 1}
    assert CostRecord.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    "changed",
    [
        {"cost_cents": "1.500001"},
        {"model": "gpt-4o-mini"},
        {"input_tokens": 1},
        {"is_retry": True},
        {"user_id": "u-1"},
        {"feature_tag": "unclassified"},
        {"created_at": "2026-03-02T10:29:59Z"},
    ],
)
def test_any_payload_field_changed_is_a_conflict(api_client, changed):
    # given
    sent = record(idempotency_key="k", created_at="2026-03-02T10:30:00Z", feature_tag="typo")
    with time_machine.travel(NOW, tick=False):
        post(api_client, [sent])
        # when
        response = post(api_client, [{**sent, **changed}])
    # then
    assert response.status_code == 409


def test_created_at_left_out_matches_the_stored_one(api_client, tenant):
    # given: created_at left to the receipt time
    with time_machine.travel(NOW, tick=False):
        post(api_client, [record(idempotency_key="k")])
    # when: the same body a minute later, then with the stored instant, then another one
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        retried = post(api_client, [record(idempotency_key="k")])
        same = post(api_client, [record(idempotency_key="k", created_at=NOW.isoformat())])
        other = post(
            api_client,
            [record(idempotency_key="k", created_at=(NOW - timedelta(seconds=1)).isoformat())],
        )
    # then
    assert counts(retried) == counts(same) == {"accepted": 0, "duplicates": 1}
    assert other.status_code == 409
    assert CostRecord.objects.get(tenant=tenant).created_at == NOW


def test_created_at_left_out_in_the_batch_matches_the_first_record(api_client):
    with time_machine.travel(NOW, tick=False):
        response = post(
            api_client,
            [
                record(idempotency_key="k"),
                record(idempotency_key="k", created_at=NOW.isoformat()),
                record(idempotency_key="k"),
            ],
        )
        conflict = post(
            api_client,
            [
                record(idempotency_key="j", created_at="2026-03-02T10:00:00Z"),
                record(idempotency_key="j", created_at="2026-03-02T10:00:01Z"),
            ],
        )
    assert counts(response) == {"accepted": 1, "duplicates": 2}
    assert conflict.status_code == 409


def test_tag_is_compared_as_sent_not_as_stored(api_client, tenant):
    # given: "chat" was unknown, so the record was stored unclassified; then it is registered
    post(api_client, [record(idempotency_key="k", feature_tag="chat")])
    FeatureTagFactory(tenant=tenant, tag="chat")
    # when
    response = post(api_client, [record(idempotency_key="k", feature_tag="chat")])
    # then: the same payload, whatever the registry says now
    assert counts(response) == {"accepted": 0, "duplicates": 1}
    assert CostRecord.objects.get(tenant=tenant).feature_tag == "unclassified"


def test_record_stored_before_the_sent_tag_was_kept_matches_any_tag_it_could_have_had(
    api_client, tenant
):
    # given: an unclassified keyed record without the tag as sent, as ingested before
    fields = {"model": "gpt-4o", "provider": None, "input_tokens": 0, "output_tokens": 0}
    CostRecordFactory(
        tenant=tenant, idempotency_key="old", feature_tag="unclassified", created_at=NOW, **fields
    )
    # when
    with time_machine.travel(NOW, tick=False):
        tagged = post(api_client, [record(idempotency_key="old", feature_tag="chat")])
        untagged = post(api_client, [record(idempotency_key="old")])
        dearer = post(api_client, [record(idempotency_key="old", feature_tag="chat", cost_cents=2)])
    # then: any tag may have been the one sent; no tag or another price is another payload
    assert counts(tagged) == {"accepted": 0, "duplicates": 1}
    assert (untagged.status_code, dearer.status_code) == (409, 409)


def test_unclassified_record_keeps_the_tag_as_sent(api_client, tenant):
    FeatureTagFactory(tenant=tenant, tag="chat")
    FeatureTagFactory(tenant=tenant, tag="retired", is_active=False)
    post(
        api_client,
        [record(feature_tag=tag) for tag in ("chat", "retired", "typo", "unclassified", None)],
    )
    stored = CostRecord.objects.filter(tenant=tenant).values_list("feature_tag", "sent_feature_tag")
    assert sorted(stored, key=str) == sorted(
        [
            ("chat", None),
            ("unclassified", "retired"),
            ("unclassified", "typo"),
            ("unclassified", "unclassified"),
            (None, None),
        ],
        key=str,
    )


def test_conflicting_key_in_another_tenant_is_not_a_conflict(api_client, other_client):
    post(other_client, [record(idempotency_key="k", cost_cents=2)])
    response = post(api_client, [record(idempotency_key="k", cost_cents=3)])
    assert counts(response) == {"accepted": 1, "duplicates": 0}


def test_conflict_leaves_snapshots_as_they_were(api_client, tenant):
    # given
    with time_machine.travel(NOW, tick=False):
        post(api_client, [record(idempotency_key="k", created_at="2026-03-01T10:05:00Z")])
    hour = snapshot(tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10))
    # when: a new record of that hour travels with the conflicting one
    with time_machine.travel(NOW, tick=False):
        response = post(
            api_client,
            [
                record(created_at="2026-03-01T10:10:00Z"),
                record(idempotency_key="k", cost_cents=5, created_at="2026-03-01T10:05:00Z"),
            ],
        )
    # then
    assert response.status_code == 409
    hour.refresh_from_db()
    assert hour.is_stale is False
    assert CostRecord.objects.filter(tenant=tenant).count() == 1


# --- the answer says what became unclassified -------------------------------------------------


def test_answer_counts_unclassified_records_by_reason_and_names_the_tags(api_client, tenant):
    # given
    FeatureTagFactory(tenant=tenant, tag="chat")
    FeatureTagFactory(tenant=tenant, tag="retired", is_active=False)
    sent = ["chat", "retired", "typo", "typo", "Chat", "unclassified", None, "retired"]
    # when
    response = post(api_client, [record(feature_tag=tag) for tag in sent])
    # then
    assert response.status_code == 201
    assert response.json()["unclassified"] == {
        "count": 5,
        "reasons": {"unknown_feature_tag": 3, "inactive_feature_tag": 2},
        "unknown_feature_tags": ["Chat", "typo"],
        "inactive_feature_tags": ["retired"],
    }


def test_duplicates_are_not_counted_as_unclassified(api_client):
    # given
    batch = [record(idempotency_key="a", feature_tag="typo"), record(feature_tag="other")]
    post(api_client, batch)
    # when: the keyed record is a duplicate now, the keyless one is new
    response = post(api_client, batch)
    # then
    assert counts(response) == {"accepted": 1, "duplicates": 1}
    assert response.json()["unclassified"]["count"] == 1
    assert response.json()["unclassified"]["unknown_feature_tags"] == ["other"]


def test_readme_example_keeps_its_registered_tag(api_client, tenant):
    # given: the README registers the tag before sending records with it
    created = api_client.post(
        "/api/v1/feature-tags/", {"tag": "chat", "display_name": "Chat"}, format="json"
    )
    assert created.status_code == 201
    # when: the README's record, as written there
    response = api_client.post(
        URL,
        json.loads(
            '{"records": [{"model": "gpt-4o", "cost_cents": 12.5, "input_tokens": 1200,'
            ' "output_tokens": 300, "feature_tag": "chat", "idempotency_key": "call-1"}]}'
        ),
        format="json",
    )
    # then
    assert response.status_code == 201
    assert counts(response) == {"accepted": 1, "duplicates": 0}
    assert response.json()["unclassified"]["count"] == 0
    assert CostRecord.objects.get(tenant=tenant).feature_tag == "chat"


# --- staleness --------------------------------------------------------------------------------


def test_ingest_marks_covering_complete_snapshots_stale(api_client, tenant, other_tenant):
    # given
    hour = snapshot(tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10))
    day = snapshot(tenant, SnapshotType.DAILY, utc(2026, 3, 1))
    other_hour = snapshot(tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 11))
    other_day = snapshot(tenant, SnapshotType.DAILY, utc(2026, 2, 28))
    computing = snapshot(
        tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10) - timedelta(days=1), SnapshotStatus.FAILED
    )
    theirs = snapshot(other_tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10))
    # when
    with time_machine.travel(NOW, tick=False):
        response = post(api_client, [record(created_at="2026-03-01T10:59:59.999999Z")])
    # then
    assert response.status_code == 201
    stale = set(CostSnapshot.objects.filter(is_stale=True).values_list("id", flat=True))
    assert stale == {hour.id, day.id}
    assert not {other_hour.id, other_day.id, computing.id, theirs.id} & stale


def test_period_end_is_exclusive_for_staleness(api_client, tenant):
    # given
    hour = snapshot(tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10))
    # when: a record at 11:00 sharp belongs to the next hour
    with time_machine.travel(NOW, tick=False):
        post(api_client, [record(created_at="2026-03-01T11:00:00Z")])
    # then
    hour.refresh_from_db()
    assert hour.is_stale is False


def test_duplicate_only_batch_marks_nothing_stale(api_client, tenant):
    # given
    CostRecordFactory(
        tenant=tenant, idempotency_key="k", model="gpt-4o", created_at=utc(2026, 3, 1, 10, 5)
    )
    hour = snapshot(tenant, SnapshotType.HOURLY, utc(2026, 3, 1, 10))
    # when: the stored record's payload again
    with time_machine.travel(NOW, tick=False):
        response = post(
            api_client,
            [
                record(
                    idempotency_key="k",
                    provider="openai",
                    input_tokens=100,
                    output_tokens=50,
                    created_at="2026-03-01T10:05Z",
                )
            ],
        )
    # then
    assert counts(response) == {"accepted": 0, "duplicates": 1}
    hour.refresh_from_db()
    assert hour.is_stale is False


# --- metrics and query budget -----------------------------------------------------------------


def test_accepted_batch_counts_records_after_commit(api_client, django_capture_on_commit_callbacks):
    # given
    accepted = counter("analytics_cost_records_ingested_total", result="accepted")
    duplicate = counter("analytics_cost_records_ingested_total", result="duplicate")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, [record(idempotency_key="a"), record(idempotency_key="a"), record()])
    # then
    assert counter("analytics_cost_records_ingested_total", result="accepted") == accepted + 2
    assert counter("analytics_cost_records_ingested_total", result="duplicate") == duplicate + 1


def test_ingest_is_one_statement_whatever_the_batch_size(api_client, django_assert_num_queries):
    # given: the key's last_used_at is fresh, so authentication is one read
    post(api_client, [record()])
    # then: key check, savepoint, the ingest statement, savepoint release
    with django_assert_num_queries(4):
        response = post(api_client, [record(idempotency_key=str(i)) for i in range(500)])
    assert response.json()["accepted"] == 500


# --- concurrency ------------------------------------------------------------------------------


def _run_in_thread(target, results, index):
    try:
        results[index] = target()
    except Exception as exc:  # surfaced by the assertions of the test
        results[index] = exc
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_the_same_keyed_batch_write_each_key_once(tenant, api_client):
    # given
    batch = [record(idempotency_key=f"key-{i}", cost_cents=i) for i in range(200)]
    start = threading.Barrier(2)
    results = [None, None]

    def send():
        start.wait()
        return post(api_client, batch)

    threads = [threading.Thread(target=_run_in_thread, args=(send, results, i)) for i in range(2)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert [response.status_code for response in results] == [201, 201]
    bodies = [response.json() for response in results]
    assert sum(body["accepted"] for body in bodies) == 200
    assert sum(body["duplicates"] for body in bodies) == 200
    assert CostRecord.objects.filter(tenant=tenant).count() == 200


@pytest.mark.django_db(transaction=True)
def test_eight_clients_sending_the_same_batch_store_it_once_and_get_no_conflict(tenant, api_key):
    # given
    batch = [record(idempotency_key=f"key-{i}", cost_cents=i, feature_tag="t") for i in range(100)]
    start = threading.Barrier(8)
    results = [None] * 8

    def send():
        client = key_client(api_key[1])
        start.wait()
        return post(client, batch)

    threads = [threading.Thread(target=_run_in_thread, args=(send, results, i)) for i in range(8)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert [getattr(response, "status_code", response) for response in results] == [201] * 8
    bodies = [response.json() for response in results]
    assert sum(body["accepted"] for body in bodies) == 100
    assert sum(body["duplicates"] for body in bodies) == 700
    assert sum(body["unclassified"]["count"] for body in bodies) == 100
    assert CostRecord.objects.filter(tenant=tenant).count() == 100


@pytest.mark.django_db(transaction=True)
def test_racing_batches_with_different_payloads_under_one_key_store_one_and_refuse_one(
    tenant, api_key
):
    # given
    start = threading.Barrier(2)
    results = [None, None]

    def send(cost):
        client = key_client(api_key[1])
        start.wait()
        return post(
            client, [record(idempotency_key=f"key-{i}", cost_cents=cost) for i in range(50)]
        )

    threads = [
        threading.Thread(target=_run_in_thread, args=(lambda c=c: send(c), results, i))
        for i, c in enumerate((1, 2))
    ]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert sorted(response.status_code for response in results) == [201, 409]
    winner = next(c for c, r in zip((1, 2), results, strict=True) if r.status_code == 201)
    stored = CostRecord.objects.filter(tenant=tenant)
    assert stored.count() == 50
    assert set(stored.values_list("cost_cents", flat=True)) == {Decimal(winner)}


def _waiting_on_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_batch_racing_an_uncommitted_batch_with_the_same_keys_waits_and_skips(tenant):
    # given: batch A is inserted but not committed yet
    rows = [
        {
            "idempotency_key": f"key-{i}",
            "user_id": None,
            "feature_tag": None,
            "request_id": None,
            "workflow_id": None,
            "run_id": None,
            "skill_id": None,
            "model": "gpt-4o",
            "provider": None,
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_cents": Decimal(1),
            "is_retry": False,
            "created_at": NOW,
        }
        for i in range(3)
    ]
    inserted, release = threading.Event(), threading.Event()
    results = [None, None]

    def batch_a():
        with transaction.atomic():
            result = cost_records_ingest(tenant=tenant, records=rows, received_at=NOW)
            inserted.set()
            release.wait(timeout=10)
        return result

    def batch_b():
        return cost_records_ingest(tenant=tenant, records=rows, received_at=NOW)

    thread_a = threading.Thread(target=_run_in_thread, args=(batch_a, results, 0))
    thread_b = threading.Thread(target=_run_in_thread, args=(batch_b, results, 1))
    thread_a.start()
    assert inserted.wait(timeout=10)
    # when: B starts and blocks on A's unique-index entries until A commits
    thread_b.start()
    deadline = time.monotonic() + 10
    while not _waiting_on_lock() and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    thread_a.join()
    thread_b.join()
    # then
    assert (results[0].accepted, results[0].duplicates) == (3, 0)
    assert (results[1].accepted, results[1].duplicates) == (0, 3)
    assert CostRecord.objects.filter(tenant=tenant).count() == 3


# --- list and detail --------------------------------------------------------------------------


def test_list_is_newest_first_with_the_spec_fields(api_client, tenant, other_tenant):
    # given
    old = CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 9), cost_cents=Decimal("2.5"))
    new = CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10), feature_tag="chat")
    tie = CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10))
    CostRecordFactory(tenant=other_tenant, created_at=utc(2026, 3, 1, 11))
    # when
    response = api_client.get(URL)
    # then
    assert response.status_code == 200
    results = response.json()["results"]
    assert [item["id"] for item in results] == [tie.id, new.id, old.id]
    assert set(results[0]) == {
        "id",
        "idempotency_key",
        "user_id",
        "feature_tag",
        "request_id",
        "workflow_id",
        "run_id",
        "skill_id",
        "model",
        "provider",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_cents",
        "cost_source",
        "price_catalog_version",
        "is_retry",
        "created_at",
        "ingested_at",
    }
    assert results[2]["created_at"] == "2026-03-01T09:00:00Z"
    assert results[2]["cost_cents"] == 2.5
    assert b'"cost_cents":2.5' in response.content


def test_list_filters(api_client, tenant):
    # given
    hit = CostRecordFactory(
        tenant=tenant, created_at=utc(2026, 3, 1, 10), model="a", feature_tag="f", user_id="u"
    )
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 11), model="a", feature_tag="f")
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10), model="b", user_id="u")
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 9), model="a", user_id="u")
    # when
    response = api_client.get(
        URL,
        {
            "from": "2026-03-01T10:00:00Z",
            "to": "2026-03-01T11:00:00Z",
            "model": "a",
            "feature_tag": "f",
            "user_id": "u",
        },
    )
    # then
    assert [item["id"] for item in response.json()["results"]] == [hit.id]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"from": "2026-03-01T10:00:00"}, "from"),
        ({"to": "not-a-date"}, "to"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"model": "m" * 65}, "model"),
        ({"page_size": "201"}, "page_size"),
    ],
)
def test_invalid_list_filters_are_400(api_client, params, field):
    response = api_client.get(URL, params)
    assert response.status_code == 400
    assert field in field_errors(response)


def test_list_pages_with_a_cursor(api_client, tenant):
    # given
    records = [
        CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10, minute))
        for minute in range(5)
    ]
    # when
    first = api_client.get(URL, {"page_size": 3}).json()
    second = api_client.get(first["next"]).json()
    # then
    ids = [item["id"] for item in first["results"] + second["results"]]
    assert ids == [r.id for r in reversed(records)]
    assert second["next"] is None


def test_list_query_count_does_not_grow_with_the_page(
    api_client, tenant, django_assert_num_queries
):
    # given
    CostRecordFactory.create_batch(30, tenant=tenant)
    api_client.get(URL)  # refreshes the key's last_used_at
    # then: key lookup and one page query
    with django_assert_num_queries(2):
        response = api_client.get(URL)
    assert len(response.json()["results"]) == 30


def test_detail_of_another_tenants_record_is_404(api_client, tenant, other_tenant):
    # given
    mine = CostRecordFactory(tenant=tenant)
    theirs = CostRecordFactory(tenant=other_tenant)
    # when / then
    assert api_client.get(f"{URL}{mine.id}/").json()["id"] == mine.id
    response = api_client.get(f"{URL}{theirs.id}/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert api_client.get(f"{URL}abc/").status_code == 404


def test_records_are_append_only(api_client, tenant):
    record_row = CostRecordFactory(tenant=tenant)
    assert api_client.delete(f"{URL}{record_row.id}/").status_code == 405
    assert api_client.put(f"{URL}{record_row.id}/", {}, format="json").status_code == 405
    assert json.loads(api_client.patch(f"{URL}{record_row.id}/", {}, format="json").content)[
        "error"
    ] == ("method_not_allowed")
