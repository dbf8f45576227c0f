import threading
from decimal import Decimal

import pytest
import time_machine
from django.db import connections
from prometheus_client import REGISTRY

from analytics.models import RunRecord, RunStatus
from tests.conftest import key_client
from tests.factories import RunRecordFactory, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/runs/"
NOW = utc(2026, 3, 2, 10, 30)


def run(run_id="run-1", **fields) -> dict:
    return {"id": run_id, "worker_id": "worker-a", "status": "running", **fields}


def post(client, runs):
    return client.post(URL, {"runs": runs}, format="json")


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- upsert -----------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_new_runs_are_created_with_defaults(api_client, tenant):
    # when
    response = post(
        api_client,
        [
            run("r-1"),
            run(
                "r-2",
                status="failed",
                success=False,
                error="boom",
                total_tokens=10,
                total_latency_ms=250,
                cost_cents="0.25",
                is_retry=True,
                attempt=2,
                parent_run_id="r-1",
                created_at="2026-03-02T09:00:00Z",
                started_at="2026-03-02T09:00:01Z",
                completed_at="2026-03-02T09:00:02Z",
            ),
        ],
    )
    # then
    assert response.status_code == 201
    assert response.json() == {"created": 2, "updated": 0, "unchanged": 0}
    plain = RunRecord.objects.get(tenant=tenant, run_id="r-1")
    assert (plain.status, plain.attempt, plain.is_retry, plain.cost_cents) == (
        "running",
        1,
        False,
        None,
    )
    assert plain.created_at == plain.ingested_at == plain.updated_at == NOW
    full = RunRecord.objects.get(tenant=tenant, run_id="r-2")
    assert (full.status, full.success, full.error, full.attempt) == ("failed", False, "boom", 2)
    assert (full.total_tokens, full.total_latency_ms, full.cost_cents) == (
        10,
        250,
        Decimal("0.25"),
    )
    assert full.created_at == utc(2026, 3, 2, 9)
    assert full.completed_at == utc(2026, 3, 2, 9, 0, 2)


def test_spec_example_resending_a_completed_run_unchanged_is_unchanged(api_client, tenant):
    # given
    completed = run(status="completed", cost_cents=3, created_at="2026-03-01T10:00:00Z")
    post(api_client, [completed])
    # when
    response = post(api_client, [completed])
    # then
    assert response.status_code == 201
    assert response.json() == {"created": 0, "updated": 0, "unchanged": 1}


def test_spec_example_changing_a_completed_run_is_409_and_writes_nothing(api_client, tenant):
    # given
    RunRecordFactory(tenant=tenant, run_id="done", status="completed", cost_cents=Decimal(3))
    RunRecordFactory(tenant=tenant, run_id="busy", status="running")
    conflicts = counter("analytics_ingest_batches_rejected_total", kind="runs", reason="conflict")
    # when
    response = post(
        api_client,
        [
            run("new"),
            run("busy", status="completed"),
            run("done", status="completed", cost_cents=4),
        ],
    )
    # then
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert body["field_errors"] == [{"field": "runs[2]", "reason": "run is terminal and immutable"}]
    assert not RunRecord.objects.filter(run_id="new").exists()
    assert RunRecord.objects.get(run_id="busy").status == "running"
    assert RunRecord.objects.get(run_id="done").cost_cents == Decimal(3)
    assert (
        counter("analytics_ingest_batches_rejected_total", kind="runs", reason="conflict")
        == conflicts + 1
    )


@pytest.mark.parametrize("status", ["completed", "failed", "crashed"])
def test_every_terminal_status_is_immutable(api_client, tenant, status):
    RunRecordFactory(tenant=tenant, run_id="r", status=status)
    response = post(api_client, [run("r", status="running")])
    assert response.status_code == 409


def test_only_fields_present_are_compared_and_applied(api_client, tenant):
    # given
    stored = RunRecordFactory(
        tenant=tenant,
        run_id="r",
        status="running",
        total_tokens=5,
        error="transient",
        created_at=utc(2026, 3, 1, 10),
    )
    # when: the item omits total_tokens and error, and changes the status
    with time_machine.travel(NOW, tick=False):
        response = post(
            api_client, [run("r", status="completed", cost_cents="1.5", attempt=1, success=True)]
        )
    # then
    assert response.json() == {"created": 0, "updated": 1, "unchanged": 0}
    stored.refresh_from_db()
    assert (stored.status, stored.cost_cents, stored.success) == ("completed", Decimal("1.5"), True)
    assert (stored.total_tokens, stored.error) == (5, "transient")
    assert stored.created_at == utc(2026, 3, 1, 10)
    assert stored.updated_at == NOW


def test_terminal_run_resent_with_a_subset_of_fields_is_unchanged(api_client, tenant):
    RunRecordFactory(tenant=tenant, run_id="r", status="completed", total_tokens=9)
    response = post(api_client, [run("r", status="completed")])
    assert response.json() == {"created": 0, "updated": 0, "unchanged": 1}


def test_mixed_batch_counts_each_outcome(api_client, tenant, django_capture_on_commit_callbacks):
    # given
    RunRecordFactory(tenant=tenant, run_id="same", status="running", worker_id="worker-a")
    RunRecordFactory(tenant=tenant, run_id="moves", status="queued", worker_id="worker-a")
    created = counter("analytics_run_records_upserted_total", result="created")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, [run("same"), run("moves"), run("fresh")])
    # then
    assert response.json() == {"created": 1, "updated": 1, "unchanged": 1}
    assert counter("analytics_run_records_upserted_total", result="created") == created + 1


def test_run_ids_are_scoped_to_the_tenant(api_client, other_tenant):
    RunRecordFactory(tenant=other_tenant, run_id="r", status="completed")
    response = post(api_client, [run("r")])
    assert response.json() == {"created": 1, "updated": 0, "unchanged": 0}


# --- validation -------------------------------------------------------------------------------


def test_repeated_id_is_rejected_on_the_later_index(api_client):
    response = post(api_client, [run("a"), run("b"), run("a")])
    assert response.status_code == 400
    assert set(field_errors(response)) == {"runs[2].id"}
    assert RunRecord.objects.count() == 0


@pytest.mark.parametrize(
    "bad, field, reason",
    [
        ({"worker_id": "w", "status": "running"}, "id", "is required"),
        (run(worker_id=None), "worker_id", "may not be null"),
        ({"id": "r", "status": "running"}, "worker_id", "is required"),
        (run(status="done"), "status", "must be one of: queued, running, completed"),
        (run(attempt=0), "attempt", "must be greater than or equal to 1"),
        (run(total_tokens=-1), "total_tokens", "must be greater than or equal to 0"),
        (run(cost_cents=-0.5), "cost_cents", "must be greater than or equal to 0"),
        (run(cost_cents="0.0000001"), "cost_cents", "must have at most 6 decimal places"),
        (run(cost_cents=100_000_001), "cost_cents", "must be less than or equal to 100000000"),
        (
            run(total_tokens=100_000_000_001),
            "total_tokens",
            "must be less than or equal to 100000000000",
        ),
        (
            run(total_latency_ms=2_592_000_001),
            "total_latency_ms",
            "must be less than or equal to 2592000000",
        ),
        (run(attempt=1001), "attempt", "must be less than or equal to 1000"),
        (run(success="true"), "success", "must be a boolean"),
        (run(started_at="2026-03-02T10:00:00"), "started_at", "timezone is required"),
        (
            run(created_at="2026-03-02T10:36:00Z"),
            "created_at",
            "must not be later than receipt time + 5 minutes",
        ),
        (run(id="r" * 65), "id", "must be at most 64 characters"),
        (run(owner="me"), "owner", "unknown field"),
    ],
)
def test_invalid_run_rejects_the_whole_batch(api_client, bad, field, reason):
    with time_machine.travel(NOW, tick=False):
        response = post(api_client, [run("fine"), bad])
    assert response.status_code == 400
    assert reason in field_errors(response)[f"runs[1].{field}"]
    assert RunRecord.objects.count() == 0


def test_run_at_every_maximum_is_stored_exactly(api_client, tenant):
    # when
    response = post(
        api_client,
        [
            run(
                "big",
                status="completed",
                cost_cents="100000000.000000",
                total_tokens=100_000_000_000,
                total_latency_ms=2_592_000_000,
                attempt=1000,
            )
        ],
    )
    # then
    assert response.status_code == 201
    stored = RunRecord.objects.get(tenant=tenant, run_id="big")
    assert (stored.cost_cents, stored.total_tokens) == (Decimal(100_000_000), 100_000_000_000)
    assert (stored.total_latency_ms, stored.attempt) == (2_592_000_000, 1000)


def test_more_than_1000_runs_is_413(api_client):
    response = post(api_client, [run(f"r-{i}") for i in range(1001)])
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


def test_empty_batch_is_400(api_client):
    response = post(api_client, [])
    assert response.status_code == 400
    assert "runs" in field_errors(response)


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_the_same_new_runs_create_each_once(tenant, api_key):
    # given: one client per thread
    batch = [run(f"r-{i}", created_at="2026-03-01T10:00:00Z") for i in range(100)]
    clients = [key_client(api_key[1]), key_client(api_key[1])]
    barrier = threading.Barrier(2)
    results = [None, None]

    def send(index):
        try:
            barrier.wait()
            results[index] = post(clients[index], batch)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert [response.status_code for response in results] == [201, 201]
    bodies = [response.json() for response in results]
    assert sum(body["created"] for body in bodies) == 100
    assert sum(body["unchanged"] for body in bodies) == 100
    assert RunRecord.objects.filter(tenant=tenant).count() == 100


# --- reads ------------------------------------------------------------------------------------


def test_list_is_newest_first_and_uses_the_client_id(api_client, tenant, other_tenant):
    # given
    older = RunRecordFactory(tenant=tenant, run_id="older", created_at=utc(2026, 3, 1, 9))
    newer = RunRecordFactory(tenant=tenant, run_id="newer", created_at=utc(2026, 3, 1, 10))
    RunRecordFactory(tenant=other_tenant, run_id="theirs")
    # when
    results = api_client.get(URL).json()["results"]
    # then
    assert [item["id"] for item in results] == [newer.run_id, older.run_id]
    assert results[1]["created_at"] == "2026-03-01T09:00:00Z"
    assert "tenant" not in results[0]


def test_list_filters(api_client, tenant):
    # given
    RunRecordFactory(
        tenant=tenant, run_id="hit", worker_id="w1", status="failed", created_at=utc(2026, 3, 1, 10)
    )
    RunRecordFactory(
        tenant=tenant,
        run_id="other-worker",
        worker_id="w2",
        status="failed",
        created_at=utc(2026, 3, 1, 10),
    )
    RunRecordFactory(
        tenant=tenant,
        run_id="other-status",
        worker_id="w1",
        status="completed",
        created_at=utc(2026, 3, 1, 10),
    )
    RunRecordFactory(
        tenant=tenant,
        run_id="too-late",
        worker_id="w1",
        status="failed",
        created_at=utc(2026, 3, 1, 12),
    )
    # when
    response = api_client.get(
        URL,
        {
            "worker_id": "w1",
            "status": "failed",
            "from": "2026-03-01T00:00:00Z",
            "to": "2026-03-01T12:00:00Z",
        },
    )
    # then
    assert [item["id"] for item in response.json()["results"]] == ["hit"]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "done"}, "status"),
        ({"from": "2026-03-01T00:00:00"}, "from"),  # naive; a date alone is midnight UTC
        ({"to": "1999-12-31"}, "to"),  # outside the supported range
    ],
)
def test_invalid_run_filters_are_400(api_client, params, field):
    response = api_client.get(URL, params)
    assert response.status_code == 400
    assert field in field_errors(response)


def test_list_query_count_is_fixed(api_client, tenant, django_assert_num_queries):
    RunRecordFactory.create_batch(20, tenant=tenant)
    api_client.get(URL)
    with django_assert_num_queries(2):
        response = api_client.get(URL)
    assert len(response.json()["results"]) == 20


def test_detail_by_client_run_id_and_404_for_another_tenant(api_client, tenant, other_tenant):
    # given
    RunRecordFactory(tenant=tenant, run_id="job.1", status=RunStatus.QUEUED)
    RunRecordFactory(tenant=other_tenant, run_id="theirs")
    # when / then
    mine = api_client.get(f"{URL}job.1/")
    assert mine.status_code == 200
    assert mine.json()["status"] == "queued"
    response = api_client.get(f"{URL}theirs/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
