"""Fuzz every operation of the schema the service serves, against the service itself.

Schemathesis reads `/api/schema/` from the Django WSGI application and, per operation,
sends the documented examples and a few generated requests (valid and invalid ones)
in-process, with a tenant API key, on the test database. Every response must be what the
schema promises: not a 5xx, a documented status code, a documented content type and a body
that matches the documented schema.

The run is bounded and reproducible: a fixed seed, derandomized generation, MAX_EXAMPLES
generated requests per operation, no shrinking, no example database, no coverage or
stateful phase. A failure names the operation and prints a curl command that replays it.

Each request runs in a savepoint that is rolled back afterwards, so every request sees the
seeded data and nothing an earlier request wrote. Valid requests to a detail route are
pointed at a seeded object, so they read, change or delete a real one.
"""

from contextlib import contextmanager
from datetime import timedelta

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from analytics.models import ApiKey, SnapshotType
from tests.analytics.factories import (
    AnomalyFactory,
    CostSnapshotFactory,
    IncidentFactory,
    PlannedActivityFactory,
    SnapshotAggregateFactory,
)
from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import BreakerIncidentFactory, CanaryReportFactory
from tests.factories import (
    ApiKeyFactory,
    BudgetFactory,
    CostRecordFactory,
    FeatureTagFactory,
    RunRecordFactory,
    TenantFactory,
)
from tests.feedback.factories import PatternFeedbackFactory
from tests.predictions.factories import PredictionFactory

SEED = 20260310
# Generated requests per operation, on top of the documented examples. With about 75
# operations the whole test takes well under a minute on two cores.
MAX_EXAMPLES = 4

FUZZ_CONFIG = {
    "seed": SEED,
    "generation": {
        "max-examples": MAX_EXAMPLES,
        "no-shrink": True,
        "deterministic": True,
        "database": "none",
    },
    "phases": {
        "examples": {"enabled": True},
        "fuzzing": {"enabled": True},
        "coverage": {"enabled": False},
        "stateful": {"enabled": False},
    },
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
    },
}

# Read once at collection, as the service serves it; generating it reads no database.
schema = schemathesis.openapi.from_wsgi(
    "/api/schema/?format=json", WSGIHandler(), config=SchemathesisConfig.from_dict(FUZZ_CONFIG)
)


class _Rollback(Exception):
    pass


@contextmanager
def rolled_back():
    """Run the block in a savepoint and roll it back, whatever the block did."""
    try:
        with transaction.atomic():
            yield
            raise _Rollback
    except _Rollback:
        pass


@pytest.fixture
def same_connection():
    """Keep the test's connection, and so its transaction, across in-process requests.

    Django closes "old" connections when a request starts and finishes; inside the test's
    transaction that would mark it for rollback. Django's own test client unhooks the same
    two receivers while it runs a request.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_tenant(db):
    """A tenant with an object behind every detail route: its raw key and the path values."""
    tenant = TenantFactory(slug="fuzz")
    raw_key = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=tenant, raw_key=raw_key)
    now = timezone.now()
    record = CostRecordFactory(
        tenant=tenant, created_at=now - timedelta(hours=2), feature_tag="chat", user_id="u1"
    )
    run = RunRecordFactory(tenant=tenant, run_id="run-fuzz-1")
    tag = FeatureTagFactory(tenant=tenant, tag="chat")
    budget = BudgetFactory(tenant=tenant)
    snapshot = CostSnapshotFactory(
        tenant=tenant,
        snapshot_type=SnapshotType.DAILY,
        period_start=(now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0),
    )
    SnapshotAggregateFactory(snapshot=snapshot)
    incident = IncidentFactory(tenant=tenant)
    anomaly = AnomalyFactory(tenant=tenant, incident=incident)
    activity = PlannedActivityFactory(tenant=tenant)
    feedback = PatternFeedbackFactory(tenant=tenant)
    prediction = PredictionFactory(tenant=tenant, subject_id=run.worker_id)
    ProvenanceFactory(tenant=tenant)
    BreakerIncidentFactory()
    CanaryReportFactory()
    # Path template prefix -> the path parameters of its seeded object.
    path_parameters = {
        "/api/v1/anomalies/{id}/": {"id": anomaly.pk},
        "/api/v1/budgets/{id}/": {"id": budget.pk},
        "/api/v1/cost-records/{id}/": {"id": record.pk},
        "/api/v1/costsim/datasets/{dataset_id}/": {"dataset_id": "low_variance"},
        "/api/v1/feature-tags/{id}/": {"id": tag.pk},
        "/api/v1/feedback/{id}/": {"id": str(feedback.pk)},
        "/api/v1/incidents/{id}/": {"id": incident.pk},
        "/api/v1/planned-activities/{id}/": {"id": activity.pk},
        "/api/v1/predictions/{id}/": {"id": str(prediction.pk)},
        "/api/v1/predictions/subject/{subject_type}/{subject_id}/": {
            "subject_type": prediction.subject_type,
            "subject_id": prediction.subject_id,
        },
        "/api/v1/runs/{id}/": {"id": run.run_id},
        "/api/v1/snapshots/{id}/": {"id": snapshot.pk},
    }
    return {"raw_key": raw_key, "path_parameters": path_parameters}


def _point_at_seeded_object(case, path_parameters: dict) -> None:
    """Aim a valid request at a seeded object; an invalid one keeps its generated path."""
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    for prefix, values in path_parameters.items():
        if case.operation.path.startswith(prefix):
            case.path_parameters = {**(case.path_parameters or {}), **values}
            return


@schema.parametrize()
# Health checks judge the generator, not the API: the fixtures are shared by the examples on
# purpose (each request rolls back its writes), and a slow, loaded CI machine must not fail
# the build for generating slowly.
@settings(suppress_health_check=list(HealthCheck))
def test_api_answers_as_its_schema_says(case, fuzz_tenant, same_connection):
    # given
    _point_at_seeded_object(case, fuzz_tenant["path_parameters"])
    headers = {"Authorization": f"Api-Key {fuzz_tenant['raw_key']}"}
    # when
    with rolled_back():
        response = case.call(headers=headers)
    # then
    case.validate_response(response, headers=headers)
