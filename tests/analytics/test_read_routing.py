"""Reads that may lag go to the read replica; writes never do.

The replica here is a second connection to the test database opened read-only
(`default_transaction_read_only`), the way a streaming standby refuses writes: any write
routed to it fails, so a passing write proves it went to the primary.
"""

import os
import subprocess
import sys
from decimal import Decimal

import pytest
import time_machine
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.utils import InternalError
from django.test.utils import CaptureQueriesContext

from analytics.db import REPLICA_DB_ALIAS, read_alias, replica_reads
from analytics.models import CostRecord, FeatureTag
from tests.factories import CostRecordFactory, utc

# The replica is a separate connection: it sees only committed rows.
pytestmark = pytest.mark.django_db(transaction=True, databases=[DEFAULT_DB_ALIAS, REPLICA_DB_ALIAS])

COST = "/api/v1/analytics/cost/"
WINDOW = {"from": "2026-02-09T00:00:00Z", "to": "2026-02-11T00:00:00Z", "resolution": "day"}


@pytest.fixture(scope="module", autouse=True)
def replica_alias(django_db_setup, django_db_blocker):
    # Module scope: the alias must exist before the test's database fixture checks its
    # `databases`. Marked as a mirror so the test teardown does not flush it (a flush is a
    # write, which this connection refuses); the primary's flush empties both.
    primary = connections[DEFAULT_DB_ALIAS].settings_dict
    connections.settings[REPLICA_DB_ALIAS] = {
        **primary,
        "OPTIONS": {**primary.get("OPTIONS", {}), "options": "-c default_transaction_read_only=on"},
        "TEST": {**primary.get("TEST", {}), "MIRROR": DEFAULT_DB_ALIAS},
    }
    yield
    connections[REPLICA_DB_ALIAS].close()
    del connections[REPLICA_DB_ALIAS]
    del connections.settings[REPLICA_DB_ALIAS]


@pytest.fixture
def replica():
    return connections[REPLICA_DB_ALIAS]


@pytest.fixture
def no_replica():
    settings_dict = connections.settings.pop(REPLICA_DB_ALIAS)
    yield
    connections.settings[REPLICA_DB_ALIAS] = settings_dict


@pytest.fixture
def spend(tenant):
    for hour, cents in ((9, "2.5"), (15, "4")):
        CostRecordFactory(
            tenant=tenant, created_at=utc(2026, 2, 10, hour), cost_cents=Decimal(cents)
        )


def test_the_replica_connection_refuses_writes(replica, tenant):
    # The premise of the tests below: a write sent to this alias fails.
    with pytest.raises(InternalError, match="read-only transaction"):
        FeatureTag.objects.using(REPLICA_DB_ALIAS).create(tenant=tenant, tag="nope")


@time_machine.travel(utc(2026, 2, 12), tick=False)
def test_cost_statistics_are_read_from_the_replica(replica, api_client, spend):
    with (
        CaptureQueriesContext(replica) as on_replica,
        CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as on_primary,
    ):
        response = api_client.get(COST, WINDOW)

    assert response.status_code == 200
    assert response.json()["totals"]["spend_cents"] == pytest.approx(6.5)
    replica_sql = " ".join(query["sql"] for query in on_replica.captured_queries)
    primary_sql = " ".join(query["sql"] for query in on_primary.captured_queries)
    assert "analytics_costrecord" in replica_sql
    # The primary only authenticated the key.
    assert "analytics_costrecord" not in primary_sql


@time_machine.travel(utc(2026, 2, 12), tick=False)
def test_the_cost_export_streams_from_the_replica(replica, api_client, spend):
    with CaptureQueriesContext(replica) as on_replica:
        response = api_client.get(COST + "export.csv", WINDOW)
        body = b"".join(response.streaming_content).decode()

    assert response.status_code == 200
    assert body.splitlines()[1].startswith("2026-02-10,6.5,")
    assert any("analytics_costrecord" in query["sql"] for query in on_replica.captured_queries)


@time_machine.travel(utc(2026, 2, 12), tick=False)
def test_answers_are_the_same_with_and_without_a_replica(api_client, spend):
    with_replica = api_client.get(COST, WINDOW).json()
    settings_dict = connections.settings.pop(REPLICA_DB_ALIAS)
    try:
        without = api_client.get(COST, WINDOW).json()
    finally:
        connections.settings[REPLICA_DB_ALIAS] = settings_dict

    assert with_replica == without


def test_writes_inside_a_replica_block_go_to_the_primary(replica, tenant):
    with replica_reads():
        record = CostRecordFactory(tenant=tenant, cost_cents=Decimal("1"))
        # A read through the ORM goes to the replica, which sees the committed row.
        assert CostRecord.objects.get(pk=record.pk).tenant_id == tenant.pk
        assert CostRecord.objects.filter(pk=record.pk).db == REPLICA_DB_ALIAS


def test_reads_inside_a_transaction_stay_on_the_primary(replica, tenant):
    with replica_reads():
        assert read_alias() == REPLICA_DB_ALIAS
        with transaction.atomic():
            record = CostRecordFactory(tenant=tenant, cost_cents=Decimal("1"))
            assert read_alias() == DEFAULT_DB_ALIAS
            # Read-your-writes: the uncommitted row is visible.
            assert CostRecord.objects.filter(pk=record.pk).exists()


def test_without_a_replica_every_read_goes_to_the_primary(no_replica, tenant):
    with replica_reads():
        assert read_alias() == DEFAULT_DB_ALIAS
        assert CostRecord.objects.all().db == DEFAULT_DB_ALIAS


def test_outside_a_replica_block_reads_go_to_the_primary(replica):
    assert read_alias() == DEFAULT_DB_ALIAS
    assert CostRecord.objects.all().db == DEFAULT_DB_ALIAS


def test_readiness_checks_the_replica(replica, client):
    response = client.get("/api/ready/")
    assert response.json()["checks"]["replica"] == "ok"


def test_database_replica_url_adds_the_alias_and_mirrors_the_primary_in_tests():
    code = (
        "import django; from django.conf import settings; django.setup(); "
        "r = settings.DATABASES['replica']; "
        "print(r['HOST'], r['NAME'], r['TEST']['MIRROR'], settings.DATABASE_ROUTERS[0])"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_SECRET_KEY": "x",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/costwise",
        "DATABASE_REPLICA_URL": "postgres://reader@replica.internal:5432/costwise",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [
        "replica.internal",
        "costwise",
        "default",
        "analytics.db.ReplicaRouter",
    ]
