"""`run_predictions` and the `predictions.run_cycle` task."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from config.celery import app
from predictions.models import Prediction
from predictions.tasks import run_cycle_task
from tests.factories import RunRecordFactory, TenantFactory

pytestmark = pytest.mark.django_db


def test_command_runs_every_active_tenant_and_prints_progress(tenant, other_tenant):
    # given
    RunRecordFactory(tenant=tenant, worker_id="w", status="failed", error="boom")
    RunRecordFactory(tenant=other_tenant, worker_id="w", status="completed")
    out = StringIO()
    # when
    call_command("run_predictions", stdout=out)
    # then
    output = out.getvalue()
    assert "acme: 1 failure likelihood, 0 cost overrun prediction(s) written" in output
    assert "globex: 0 failure likelihood" in output
    assert "Prediction cycle done for 2 tenant(s): 1 prediction(s) written" in output
    assert Prediction.objects.count() == 1


def test_command_for_one_tenant_and_twice_is_idempotent(tenant, other_tenant):
    RunRecordFactory(tenant=tenant, worker_id="w", status="failed", error="boom")
    RunRecordFactory(tenant=other_tenant, worker_id="w", status="failed", error="boom")
    call_command("run_predictions", "--tenant", "acme", stdout=StringIO())
    call_command("run_predictions", "--tenant", "acme", stdout=StringIO())
    assert list(Prediction.objects.values_list("tenant__slug", flat=True)) == ["acme"]


def test_command_rejects_unknown_tenant():
    with pytest.raises(CommandError, match="Unknown tenant"):
        call_command("run_predictions", "--tenant", "nobody", stdout=StringIO())


def test_command_rejects_inactive_tenant():
    TenantFactory(slug="asleep", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        call_command("run_predictions", "--tenant", "asleep", stdout=StringIO())


def test_task_is_registered_under_the_beat_name_and_runs(tenant):
    RunRecordFactory(tenant=tenant, worker_id="w", status="failed", error="boom")
    app.loader.import_default_modules()
    summary = run_cycle_task.apply().get()
    assert "predictions.run_cycle" in app.tasks
    assert summary["tenants"] == 1 and summary["failed_tenants"] == []
    assert summary["totals"]["predictions_created"] == 1
