"""`detect_patterns` and the `feedback.detect_patterns` task."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from config.celery import app
from feedback.models import PatternFeedback
from feedback.tasks import detect_patterns_task
from tests.factories import RunRecordFactory, TenantFactory

pytestmark = pytest.mark.django_db


def _failures(tenant, prefix):
    for index in range(3):
        RunRecordFactory(tenant=tenant, run_id=f"{prefix}-{index}", status="failed", error="boom 1")


def test_command_detects_for_every_active_tenant_and_prints_progress(tenant, other_tenant):
    # given
    _failures(tenant, "a")
    _failures(other_tenant, "g")
    _failures(TenantFactory(slug="asleep", is_active=False), "s")
    out = StringIO()
    # when
    call_command("detect_patterns", stdout=out)
    # then
    output = out.getvalue()
    assert "acme: 1 failure pattern(s), 0 cost spike(s); 1 created, 0 updated" in output
    assert "globex: 1 failure pattern(s)" in output
    assert "asleep" not in output
    assert "Pattern detection done for 2 tenant(s): 2 created, 0 updated." in output
    assert PatternFeedback.objects.count() == 2


def test_command_for_one_tenant(tenant, other_tenant):
    _failures(tenant, "a")
    _failures(other_tenant, "g")
    call_command("detect_patterns", "--tenant", "globex", stdout=StringIO())
    assert list(PatternFeedback.objects.values_list("tenant__slug", flat=True)) == ["globex"]


@pytest.mark.parametrize(
    ("slug", "message"), [("nobody", "Unknown tenant"), ("asleep", "inactive")]
)
def test_command_rejects_unknown_or_inactive_tenant(slug, message):
    TenantFactory(slug="asleep", is_active=False)
    with pytest.raises(CommandError, match=message):
        call_command("detect_patterns", "--tenant", slug, stdout=StringIO())


def test_task_is_registered_under_the_beat_name_and_runs(tenant):
    # given
    _failures(tenant, "a")
    app.loader.import_default_modules()
    # when
    summary = detect_patterns_task.apply().get()
    # then
    assert "feedback.detect_patterns" in app.tasks
    assert summary["tenants"] == 1 and summary["failed_tenants"] == []
    assert summary["totals"]["feedback_created"] == 1


def test_command_reports_a_failing_tenant_and_exits_non_zero(tenant, other_tenant, monkeypatch):
    # given: detection breaks for one tenant only
    from feedback.services import patterns

    _failures(tenant, "a")
    _failures(other_tenant, "g")
    real = patterns.patterns_detect

    def flaky(*, tenant):
        if tenant.slug == "acme":
            raise RuntimeError("boom")
        return real(tenant=tenant)

    monkeypatch.setattr(patterns, "patterns_detect", flaky)
    out, err = StringIO(), StringIO()
    # when
    with pytest.raises(CommandError, match="failed for 1 of 2 tenant"):
        call_command("detect_patterns", stdout=out, stderr=err)
    # then: the healthy tenant was still processed
    assert "acme: failed: boom" in err.getvalue()
    assert list(PatternFeedback.objects.values_list("tenant__slug", flat=True)) == ["globex"]
