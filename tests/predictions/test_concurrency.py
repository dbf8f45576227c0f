"""The prediction cycle running side by side on separate connections."""

import pytest
import time_machine

from predictions.models import Prediction
from predictions.services.cycle import prediction_cycle_run
from tests.factories import RunRecordFactory, TenantFactory, utc
from tests.feedback.test_concurrency import run_side_by_side

NOW = utc(2026, 3, 2, 10, 20)


@pytest.mark.django_db(transaction=True)
@time_machine.travel(NOW, tick=False)
def test_two_cycles_at_once_leave_one_prediction_per_subject():
    # given
    tenant = TenantFactory(slug="race")
    for worker in ("a", "b", "c"):
        RunRecordFactory(tenant=tenant, worker_id=worker, status="failed", error="boom")
    # when
    results, errors = run_side_by_side(lambda: prediction_cycle_run(tenant=tenant))
    # then
    assert errors == []
    assert [result["errors"] for result in results] == [[], []]
    assert [result["predictions_created"] for result in results] == [3, 3]
    assert sorted(Prediction.objects.values_list("subject_id", flat=True)) == ["a", "b", "c"]
    assert Prediction.objects.filter(expires_at__gt=NOW).count() == 3
