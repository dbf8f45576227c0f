from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from analytics.models import Anomaly, AnomalyType, CostRecord, DerivedCause, RunRecord, Tenant
from feedback.models import PatternFeedback
from predictions.models import Prediction

pytestmark = pytest.mark.django_db

# A Wednesday afternoon: the injected incidents do not depend on the time of day.
NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


@pytest.fixture
def seeded():
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        yield out.getvalue()


def test_seed_creates_the_demo_tenant_with_sixty_days_of_records(seeded):
    # then
    tenant = Tenant.objects.get(slug="demo")
    records = CostRecord.objects.filter(tenant=tenant)
    assert records.count() > 10_000
    first = records.order_by("created_at").first().created_at
    assert (NOW - first).days == 59
    assert RunRecord.objects.filter(tenant=tenant).count() > 500
    assert seeded.strip().splitlines()[-1].startswith("ck_")


def test_seed_injects_the_documented_incidents(seeded):
    # then
    anomalies = Anomaly.objects.filter(tenant__slug="demo", anomaly_date=NOW.date())
    spike = anomalies.get(anomaly_type=AnomalyType.ABSOLUTE_SPIKE, entity_id="search")
    assert spike.derived_cause == DerivedCause.RETRY_LOOP
    assert spike.breach_count >= 2
    assert anomalies.filter(anomaly_type=AnomalyType.SUSTAINED_DRIFT).exists()
    warning = anomalies.get(anomaly_type=AnomalyType.BUDGET_WARNING, budget_period="daily")
    assert warning.deviation_pct >= 80
    patterns = set(PatternFeedback.objects.values_list("pattern_type", flat=True))
    assert patterns == {"failure_pattern", "cost_spike"}
    subjects = set(Prediction.objects.values_list("prediction_type", "subject_id"))
    assert subjects == {
        ("failure_likelihood", "ingest-worker"),
        ("cost_overrun", "report-worker"),
    }


def test_running_the_seed_again_adds_no_records(seeded):
    # given
    def counts():
        return CostRecord.objects.count(), RunRecord.objects.count(), Anomaly.objects.count()

    before = counts()
    # when
    with time_machine.travel(NOW, tick=False):
        out = StringIO()
        call_command("seed_demo", stdout=out)
    # then
    assert counts() == before
    assert "0 of" in out.getvalue()
    assert "ck_" not in out.getvalue()


def test_a_later_seed_keeps_the_stored_records_and_does_not_fail(seeded):
    # given: the next `make run`, hours later, when every key maps to a shifted timestamp
    stored = set(CostRecord.objects.values_list("idempotency_key", "created_at", "cost_cents"))
    # when
    with time_machine.travel(NOW + timedelta(hours=3), tick=False):
        out = StringIO()
        call_command("seed_demo", "--skip-analysis", stdout=out)
    # then
    assert "Demo data ready" in out.getvalue()
    after = set(CostRecord.objects.values_list("idempotency_key", "created_at", "cost_cents"))
    assert stored <= after
    assert len({key for key, _, _ in after}) == len(after)
