"""Prediction endpoints through the real URLs."""

import uuid
from datetime import timedelta

import pytest

from analytics.models import RunRecord
from predictions.models import Prediction
from tests.factories import RunRecordFactory, utc
from tests.predictions.factories import PredictionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/predictions/"
NOW = utc(2026, 3, 2, 10, 20)


@pytest.fixture(autouse=True)
def _frozen_clock(time_machine):
    time_machine.move_to(NOW, tick=False)


@pytest.fixture
def predictions(tenant):
    """Four valid predictions of the tenant and one expired one."""
    return {
        "a": PredictionFactory(
            tenant=tenant,
            subject_id="a",
            confidence_score=0.9,
            created_at=NOW - timedelta(minutes=1),
        ),
        "b": PredictionFactory(
            tenant=tenant,
            subject_id="b",
            prediction_type="cost_overrun",
            confidence_score=0.69,
            created_at=NOW - timedelta(minutes=2),
        ),
        "c": PredictionFactory(
            tenant=tenant,
            subject_id="c",
            confidence_score=0.5,
            created_at=NOW - timedelta(minutes=3),
        ),
        "d": PredictionFactory(
            tenant=tenant,
            subject_id="a",
            prediction_type="cost_overrun",
            confidence_score=0.71,
            created_at=NOW - timedelta(minutes=4),
        ),
        "expired": PredictionFactory(
            tenant=tenant,
            subject_id="a",
            confidence_score=1.0,
            created_at=NOW - timedelta(days=2),
            expires_at=NOW,
        ),
    }


def test_list_shows_valid_predictions_with_counts_over_the_filtered_set(
    api_client, predictions, other_tenant
):
    # given
    PredictionFactory.create_batch(2, tenant=other_tenant)
    # when
    first = api_client.get(URL, {"page_size": 3})
    second = api_client.get(first.json()["next"])
    # then
    assert first.status_code == second.status_code == 200
    body = second.json()
    assert set(body) == {"next", "previous", "results", "total", "by_type", "by_subject_type"}
    assert body["total"] == 4
    assert body["by_type"] == {"failure_likelihood": 2, "cost_overrun": 2}
    assert body["by_subject_type"] == {"worker": 4, "run": 0, "tenant": 0}
    assert [item["id"] for item in body["results"]] == [str(predictions["d"].pk)]
    assert body["next"] is None
    back = api_client.get(body["previous"]).json()
    assert [item["id"] for item in back["results"]] == [
        str(predictions[key].pk) for key in ("a", "b", "c")
    ]


def test_list_item_shape(api_client, tenant):
    prediction = PredictionFactory(tenant=tenant, subject_id="w", created_at=NOW)
    [item] = api_client.get(URL).json()["results"]
    assert item == {
        "id": str(prediction.pk),
        "prediction_type": "failure_likelihood",
        "subject_type": "worker",
        "subject_id": "w",
        "confidence_score": 0.6,
        "is_advisory": True,
        "created_at": "2026-03-02T10:20:00Z",
        "expires_at": "2026-03-03T10:20:00Z",
        "is_valid": True,
    }


def test_list_filters_and_include_expired(api_client, predictions):
    body = api_client.get(URL, {"include_expired": "true", "subject_id": "a"}).json()
    assert body["total"] == 3
    expired = [item for item in body["results"] if item["id"] == str(predictions["expired"].pk)]
    assert expired[0]["is_valid"] is False
    body = api_client.get(URL, {"prediction_type": "cost_overrun"}).json()
    assert {item["subject_id"] for item in body["results"]} == {"a", "b"}
    assert api_client.get(URL, {"subject_type": "run"}).json()["total"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
        ({"limit": 2}, "limit"),
        ({"offset": 1}, "offset"),
        ({"prediction_type": "weather"}, "prediction_type"),
        ({"subject_type": "workers"}, "subject_type"),
        ({"include_expired": "sometimes"}, "include_expired"),
    ],
)
def test_invalid_list_filters_are_400_naming_the_field(api_client, params, field):
    response = api_client.get(URL, params)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["field_errors"]] == [field]


def test_list_query_count_is_fixed(api_client, predictions, django_assert_num_queries):
    api_client.get(URL)
    with django_assert_num_queries(3):
        response = api_client.get(URL, {"include_expired": "true"})
    assert len(response.json()["results"]) == 5


def test_detail_adds_value_factors_and_notes(api_client, predictions):
    prediction = predictions["a"]
    body = api_client.get(f"{URL}{prediction.pk}/").json()
    assert body["prediction_value"] == prediction.prediction_value
    assert body["contributing_factors"] == prediction.contributing_factors
    assert body["notes"] == "ADVISORY: This is a prediction, not a fact."
    assert body["is_valid"] is True and body["is_advisory"] is True


def test_detail_of_an_expired_prediction_is_still_readable(api_client, predictions):
    body = api_client.get(f"{URL}{predictions['expired'].pk}/").json()
    assert body["is_valid"] is False


@pytest.mark.parametrize("prediction_id", ["nope", str(uuid.uuid4())])
def test_unknown_or_malformed_id_is_404(api_client, prediction_id):
    response = api_client.get(f"{URL}{prediction_id}/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_another_tenants_prediction_is_404_everywhere(api_client, other_tenant):
    # given
    theirs = PredictionFactory(tenant=other_tenant, subject_id="shared")
    # then
    assert api_client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert api_client.get(URL).json()["total"] == 0
    assert api_client.get(f"{URL}stats/").json()["total"] == 0
    assert api_client.get(f"{URL}subject/worker/shared/").json()["total"] == 0


def test_subject_view(api_client, predictions):
    # when
    body = api_client.get(f"{URL}subject/worker/a/").json()
    # then
    assert set(body) == {"next", "previous", "results", "subject_type", "subject_id", "total"}
    assert body["subject_type"] == "worker" and body["subject_id"] == "a"
    assert body["total"] == 2
    assert [p["id"] for p in body["results"]] == [
        str(predictions["a"].pk),
        str(predictions["d"].pk),
    ]
    assert set(body["results"][0]) == {
        "id",
        "prediction_type",
        "confidence_score",
        "prediction_value",
        "created_at",
        "expires_at",
        "is_advisory",
        "is_valid",
    }


def test_subject_view_include_expired_and_pages(api_client, predictions):
    body = api_client.get(f"{URL}subject/worker/a/", {"include_expired": "true"}).json()
    assert body["total"] == 3
    params = {"include_expired": "true", "page_size": 1}
    body = api_client.get(f"{URL}subject/worker/a/", params).json()
    assert body["total"] == 3
    assert [p["id"] for p in body["results"]] == [str(predictions["a"].pk)]
    body = api_client.get(body["next"]).json()
    assert [p["id"] for p in body["results"]] == [str(predictions["d"].pk)]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("subject/robot/a/", {}, "subject_type"),
        ("subject/worker/a/", {"page_size": 201}, "page_size"),
        ("subject/worker/a/", {"page_size": 0}, "page_size"),
        ("subject/worker/a/", {"limit": 1}, "limit"),
    ],
)
def test_subject_view_validates_input(api_client, path, params, field):
    response = api_client.get(f"{URL}{path}", params)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["field_errors"]] == [field]


def test_stats_are_computed_over_the_filtered_set(api_client, predictions, other_tenant):
    PredictionFactory(tenant=other_tenant, confidence_score=0.99)
    body = api_client.get(f"{URL}stats/").json()
    assert body == {
        "total": 4,
        "by_type": {"failure_likelihood": 2, "cost_overrun": 2},
        "by_subject_type": {"worker": 4, "run": 0, "tenant": 0},
        "avg_confidence": 0.7,  # (0.9 + 0.69 + 0.5 + 0.71) / 4
        "high_confidence_count": 2,  # 0.9 and 0.71; 0.7 itself would not count
        "advisory_compliance": {"all_advisory": True, "non_advisory_count": 0},
    }
    body = api_client.get(f"{URL}stats/", {"include_expired": "true"}).json()
    assert body["total"] == 5
    assert body["avg_confidence"] == 0.76


def test_stats_without_predictions(api_client):
    body = api_client.get(f"{URL}stats/").json()
    assert body["avg_confidence"] == 0
    assert body["high_confidence_count"] == 0
    assert body["advisory_compliance"] == {"all_advisory": True, "non_advisory_count": 0}


def test_run_computes_predictions_for_the_callers_tenant(api_client, tenant, other_tenant):
    # given: 2 of 5 failed for the tenant; the other tenant's runs must not matter
    for index, status in enumerate(["failed", "completed", "failed", "completed", "completed"]):
        RunRecordFactory(
            tenant=tenant,
            worker_id="w",
            status=status,
            error="boom",
            created_at=NOW - timedelta(minutes=index + 1),
        )
    RunRecordFactory(tenant=other_tenant, worker_id="x", status="failed", error="boom")
    before = list(RunRecord.objects.order_by("pk").values())
    # when
    response = api_client.post(f"{URL}run/", {}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["predictions_created"] == 1
    assert body["errors"] == []
    assert body["cost_predictions"] == []
    [prediction] = body["failure_predictions"]
    assert prediction["subject_id"] == "w"
    assert prediction["confidence_score"] == 0.6
    assert prediction["is_advisory"] is True and prediction["is_valid"] is True
    assert prediction["notes"] == "ADVISORY: This is a prediction, not a fact."
    assert prediction["prediction_value"]["failure_rate"] == 0.4
    assert Prediction.objects.get().tenant == tenant
    assert list(RunRecord.objects.order_by("pk").values()) == before


def test_run_twice_in_the_same_hour_keeps_one_row(api_client, tenant):
    RunRecordFactory(tenant=tenant, worker_id="w", status="failed", error="boom")
    first = api_client.post(f"{URL}run/", {}, format="json").json()
    second = api_client.post(f"{URL}run/", {}, format="json").json()
    assert first["failure_predictions"][0]["id"] == second["failure_predictions"][0]["id"]
    assert Prediction.objects.count() == 1


def test_run_rejects_unknown_body_fields(api_client):
    response = api_client.post(f"{URL}run/", {"dry_run": True}, format="json")
    assert response.status_code == 400
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", ""), ("get", "stats/"), ("post", "run/"), ("get", "subject/worker/a/")],
)
def test_endpoints_need_a_tenant_key(client, staff_session_client, method, path):
    assert getattr(client, method)(f"{URL}{path}").status_code == 401
    assert getattr(staff_session_client, method)(f"{URL}{path}").status_code == 403
