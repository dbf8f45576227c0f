import re

import pytest
import yaml
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

# Every /api/v1/ path of spec/api.md, in the schema's {param} form.
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
