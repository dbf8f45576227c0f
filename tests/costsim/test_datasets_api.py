"""Reference dataset endpoints and V2 validation against them."""

import pytest

from costsim.services.datasets import DATASETS, validate_dataset

DATASET_IDS = ["low_variance", "high_variance", "mixed_city", "noise_injected", "historical"]


@pytest.mark.django_db
def test_list_returns_the_five_datasets_by_id(api_client):
    # when
    response = api_client.get("/api/v1/costsim/datasets/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["next"], body["previous"]) == (None, None)
    assert [d["id"] for d in body["results"]] == sorted(DATASET_IDS)
    assert body["results"][2] == {
        "id": "low_variance",
        "name": "Low Variance Dataset",
        "description": "Simple, predictable plans for baseline validation",
        "sample_count": 30,
        "thresholds": {
            "max_mean_error": 1.0,
            "max_median_error": 0.5,
            "max_std_deviation": 2.0,
            "max_outlier_pct": 0.02,
            "max_drift_score": 0.05,
        },
    }
    counts = {d["id"]: d["sample_count"] for d in body["results"]}
    assert [counts[dataset_id] for dataset_id in DATASET_IDS] == [30, 16, 25, 8, 5]


@pytest.mark.django_db
def test_list_pages_by_id(api_client):
    # when
    first = api_client.get("/api/v1/costsim/datasets/", {"page_size": 2}).json()
    second = api_client.get(first["next"]).json()
    back = api_client.get(second["previous"]).json()
    # then
    assert [d["id"] for d in first["results"]] == ["high_variance", "historical"]
    assert [d["id"] for d in second["results"]] == ["low_variance", "mixed_city"]
    assert back["results"] == first["results"] and back["previous"] is None


@pytest.mark.django_db
def test_staff_session_may_read_global_data(staff_session_client):
    # when
    response = staff_session_client.get("/api/v1/costsim/datasets/noise_injected/")
    # then
    assert response.status_code == 200
    assert response.json()["sample_tags"] == [
        "budget",
        "duplicate",
        "edge_case",
        "empty",
        "long_plan",
        "long_prompt",
        "params",
        "unknown_skill",
    ]


@pytest.mark.django_db
def test_unauthenticated_callers_get_401(client):
    # when
    response = client.get("/api/v1/costsim/datasets/")
    # then
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.django_db
def test_unknown_dataset_detail_is_a_404_with_the_spec_message(api_client):
    # when
    response = api_client.get("/api/v1/costsim/datasets/nope/")
    # then
    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "message": "Dataset not found: nope",
        "field_errors": [],
    }


@pytest.mark.django_db
def test_validate_runs_v2_over_the_dataset(api_client):
    # when
    response = api_client.post("/api/v1/costsim/datasets/historical/validate/", {}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    expected = validate_dataset("historical")
    body.pop("timestamp")
    expected.pop("timestamp")
    assert body == expected
    assert body["dataset_name"] == "Historical Dataset"
    assert body["verdict"] in ("acceptable", "not_acceptable")


@pytest.mark.django_db
def test_unknown_dataset_validation_is_a_404_with_its_own_message(api_client):
    # when
    response = api_client.post("/api/v1/costsim/datasets/nope/validate/", {}, format="json")
    # then
    assert response.status_code == 404
    assert response.json()["message"] == "Unknown dataset: nope"


@pytest.mark.django_db
def test_validate_rejects_unknown_body_fields(api_client):
    # when
    response = api_client.post(
        "/api/v1/costsim/datasets/historical/validate/", {"strict": True}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"] == [{"field": "strict", "reason": "unknown field"}]


@pytest.mark.django_db
def test_validate_needs_a_json_body(api_client):
    # when
    response = api_client.post(
        "/api/v1/costsim/datasets/historical/validate/", "x=1", content_type="text/plain"
    )
    # then
    assert response.status_code == 415


@pytest.mark.django_db
def test_validate_all_summarises_every_dataset(api_client):
    # when
    response = api_client.post("/api/v1/costsim/datasets/validate-all/", {}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert list(body["results"]) == DATASET_IDS
    assert set(body["results"]["mixed_city"]) == {
        "dataset_name",
        "sample_count",
        "mean_error",
        "drift_score",
        "verdict",
    }
    assert body["all_passed"] == all(r["verdict"] == "acceptable" for r in body["results"].values())
    assert body["timestamp"].endswith("Z")


@pytest.mark.django_db
def test_validate_all_is_not_mistaken_for_a_dataset_id(api_client):
    # when
    response = api_client.get("/api/v1/costsim/datasets/validate-all/")
    # then
    assert response.status_code == 405
    assert "validate-all" not in DATASETS
