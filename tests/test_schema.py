import json
import re

import jsonschema_rs
import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

from costsim.services.estimators import V1_SKILLS

pytestmark = pytest.mark.django_db

# Every /api/v1/ path the service documents, in the schema's {param} form.
SPEC_PATHS = [
    "/api/v1/cost-records/",
    "/api/v1/runs/",
    "/api/v1/feature-tags/",
    "/api/v1/feature-tags/{id}/",
    "/api/v1/budgets/",
    "/api/v1/budgets/{id}/",
    "/api/v1/budgets/{id}/status/",
    "/api/v1/analytics/usage/",
    "/api/v1/analytics/usage/export.csv",
    "/api/v1/analytics/cost/",
    "/api/v1/analytics/cost/export.csv",
    "/api/v1/snapshots/",
    "/api/v1/snapshots/{id}/",
    "/api/v1/snapshots/compute/",
    "/api/v1/snapshots/{id}/evaluate/",
    "/api/v1/baselines/compute/",
    "/api/v1/anomalies/",
    "/api/v1/anomalies/{id}/",
    "/api/v1/anomalies/detect/",
    "/api/v1/anomalies/{id}/acknowledge/",
    "/api/v1/anomalies/{id}/resolve/",
    "/api/v1/anomalies/{id}/feedback/",
    "/api/v1/incidents/",
    "/api/v1/incidents/{id}/",
    "/api/v1/incidents/{id}/acknowledge/",
    "/api/v1/incidents/{id}/resolve/",
    "/api/v1/incidents/{id}/dismiss/",
    "/api/v1/incidents/{id}/feedback/",
    "/api/v1/detection-settings/",
    "/api/v1/planned-activities/",
    "/api/v1/planned-activities/{id}/",
    "/api/v1/costsim/simulate/",
    "/api/v1/costsim/v1/simulate/",
    "/api/v1/costsim/v2/simulate/",
    "/api/v1/costsim/status/",
    "/api/v1/costsim/provenance/",
    "/api/v1/costsim/provenance/drift-stats/",
    "/api/v1/costsim/divergence/",
    "/api/v1/costsim/calibration/",
    "/api/v1/costsim/incidents/",
    "/api/v1/costsim/breaker/disable/",
    "/api/v1/costsim/breaker/enable/",
    "/api/v1/costsim/canary/run/",
    "/api/v1/costsim/canary/reports/",
    "/api/v1/costsim/datasets/",
    "/api/v1/costsim/datasets/{id}/",
    "/api/v1/costsim/datasets/{id}/validate/",
    "/api/v1/costsim/datasets/validate-all/",
    "/api/v1/costsim/alert-rules.yaml",
    "/api/v1/predictions/",
    "/api/v1/predictions/{id}/",
    "/api/v1/predictions/subject/{subject_type}/{subject_id}/",
    "/api/v1/predictions/stats/",
    "/api/v1/predictions/run/",
    "/api/v1/feedback/",
    "/api/v1/feedback/{id}/",
    "/api/v1/feedback/stats/",
    "/api/v1/feedback/{id}/acknowledge/",
    "/api/v1/feedback/detect/",
]


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_schema_is_a_valid_openapi_document_with_every_endpoint(client):
    # when
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    # then
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    documented = {_normalise(path) for path in schema["paths"]}
    missing = [path for path in SPEC_PATHS if _normalise(path) not in documented]
    assert missing == []


def test_docs_page_loads_its_assets_from_the_service_itself(client):
    # when
    response = client.get("/api/docs/")
    # then
    assert response.status_code == 200
    page = response.content.decode()
    asset_urls = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert asset_urls, "the Swagger UI page references no assets"
    for url in asset_urls:
        assert url.startswith("/static/"), f"{url} is not served locally"
        assert finders.find(url.removeprefix("/static/")) is not None
    assert "cdn" not in page.lower()


def _served_schema(client) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    return yaml.safe_load(response.content)


def _operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield f"{method.upper()} {path}", operation


def _is_free_form(body_schema: dict) -> bool:
    if "$ref" in body_schema:
        return False
    if body_schema.get("type") == "array":
        return _is_free_form(body_schema.get("items") or {})
    if body_schema.get("type") == "object":
        values = body_schema.get("additionalProperties")
        return not body_schema.get("properties") and not (values and _is_typed(values))
    return not body_schema


def _is_typed(value_schema) -> bool:
    return isinstance(value_schema, dict) and bool(value_schema)


def test_every_json_response_has_a_typed_body(client):
    # given
    schema = _served_schema(client)
    # when
    free_form = [
        f"{label} {status}"
        for label, operation in _operations(schema)
        for status, response in operation["responses"].items()
        if _is_free_form(
            response.get("content", {}).get("application/json", {}).get("schema", {"$ref": ""})
        )
    ]
    # then
    assert free_form == []


def test_every_operation_documents_the_error_body(client):
    # given
    schema = _served_schema(client)
    error = {"$ref": "#/components/schemas/Error"}
    # when
    missing = []
    for label, operation in _operations(schema):
        method, path = label.split(" ", 1)
        expected = {"400", "401", "403"}
        if method in ("POST", "PUT", "PATCH"):
            expected |= {"413", "415"}
        if "{" in path:
            expected.add("404")
        for status in sorted(expected):
            body = operation["responses"].get(status, {}).get("content", {})
            if body.get("application/json", {}).get("schema") != error:
                missing.append(f"{label} {status}")
    # then
    assert missing == []
    assert set(schema["components"]["schemas"]["Error"]["required"]) == {
        "error",
        "message",
        "field_errors",
    }


def test_state_conflicts_are_documented_as_409(client):
    # given
    schema = _served_schema(client)
    # when
    conflicts = {
        label for label, operation in _operations(schema) if "409" in operation["responses"]
    }
    # then
    assert conflicts >= {
        "POST /api/v1/cost-records/",
        "POST /api/v1/runs/",
        "POST /api/v1/anomalies/{id}/acknowledge/",
        "POST /api/v1/anomalies/{id}/resolve/",
        "POST /api/v1/incidents/{id}/acknowledge/",
        "POST /api/v1/incidents/{id}/resolve/",
        "POST /api/v1/incidents/{id}/dismiss/",
        "POST /api/v1/snapshots/{id}/evaluate/",
    }


# Where each simulate endpoint puts the estimate whose feasibility the example is about.
SIMULATE_ESTIMATES = {
    "/api/v1/costsim/simulate/": lambda body: body["v1"],
    "/api/v1/costsim/v1/simulate/": lambda body: body,
    "/api/v1/costsim/v2/simulate/": lambda body: body["v2"],
}


@pytest.mark.parametrize("path", list(SIMULATE_ESTIMATES))
def test_simulate_example_is_a_feasible_plan_the_endpoint_accepts(client, api_client, path):
    # given
    schema = _served_schema(client)
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    example = next(iter(body["examples"].values()))["value"]
    # when
    response = api_client.post(path, example, format="json")
    # then
    assert response.status_code == 200, response.content
    assert SIMULATE_ESTIMATES[path](response.json())["feasible"] is True
    assert {step["skill"] for step in example["plan"]} <= set(V1_SKILLS)
    assert _schema_errors(schema, body["schema"], example) == []


def _schema_errors(schema: dict, body_schema: dict, value) -> list[str]:
    """Where `value` breaks `body_schema`, a reference into the document's components."""
    components = json.loads(
        json.dumps(schema["components"]["schemas"]).replace("#/components/schemas/", "#/$defs/")
    )
    ref = body_schema["$ref"].replace("#/components/schemas/", "#/$defs/")
    validator = jsonschema_rs.Draft4Validator({"$ref": ref, "$defs": components})
    return [error.message for error in validator.iter_errors(value)]
