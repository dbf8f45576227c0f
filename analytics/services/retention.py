"""Raw cost record retention: whole months dropped as partitions, the rest deleted in batches.

A tenant keeps its raw cost records `retention_days` (NULL: COSTWISE_RECORD_RETENTION_DAYS)
back from now. Snapshots and their aggregates, rollups, baselines, anomalies and incidents
are kept whatever retention says. One run, under leader lock 7008:

1. A month partition that ends before every tenant's cutoff (inactive tenants count too)
   goes whole: it is detached (`partitions.partition_detach`, a catalog change), the key
   rows of its records are deleted COSTWISE_RETENTION_BATCH_SIZE at a time, and the table
   is dropped. A month left detached by an interrupted run is finished first.
2. For each tenant, the records older than its own cutoff that are left, partition by
   partition (DEFAULT included), are deleted in batches of the same size, each in its own
   transaction with the key rows of the records it deletes. Ingest writes only new rows and
   never waits for a batch; a re-sent old key waits for one batch at most.

Every step reads what is left before it deletes, so a run that stops halfway, or two runs
one after the other, finish the work without deleting anything twice. A dry run counts the
same rows and writes nothing.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from analytics.models import Tenant
from analytics.services.jobs import SKIPPED, JobReport
from analytics.services.locks import LockId, leader_lock
from analytics.services.partitions import (
    Partition,
    detached_drop,
    partition_detach,
    partitions_detached,
    partitions_list,
)

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out

_COUNT_SQL = """
SELECT count(*), count(idempotency_key) FROM {partition}
WHERE tenant_id = %(tenant)s AND created_at < %(cutoff)s
"""
# One batch: the oldest-first choice does not matter, the bound does. ctid = ANY(ARRAY(...))
# is a TID scan of the rows the index found; the key rows go in the same statement.
_DELETE_SQL = """
WITH gone AS (
    DELETE FROM {partition}
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {partition}
        WHERE tenant_id = %(tenant)s AND created_at < %(cutoff)s
        LIMIT %(limit)s
    ))
    RETURNING id, tenant_id, idempotency_key
),
keys AS (
    DELETE FROM analytics_costrecordkey k
    USING gone g
    WHERE k.tenant_id = g.tenant_id AND k.idempotency_key = g.idempotency_key
      AND k.record_id = g.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM keys)
"""
# The key rows of a detached month, one batch of its records (in id order) at a time.
_DETACHED_KEYS_SQL = """
WITH batch AS (
    SELECT id, tenant_id, idempotency_key FROM {partition}
    WHERE id > %(after)s ORDER BY id LIMIT %(limit)s
),
gone AS (
    DELETE FROM analytics_costrecordkey k
    USING batch b
    WHERE k.tenant_id = b.tenant_id AND k.idempotency_key = b.idempotency_key
      AND k.record_id = b.id
    RETURNING 1
)
SELECT (SELECT max(id) FROM batch), (SELECT count(*) FROM batch), (SELECT count(*) FROM gone)
"""


def retention_days(tenant: Tenant) -> int:
    return tenant.retention_days or settings.COSTWISE_RECORD_RETENTION_DAYS


def retention_cutoff(tenant: Tenant, *, now: datetime) -> datetime:
    """Records created before this instant are past the tenant's retention."""
    return now - timedelta(days=retention_days(tenant))


def retention_run(
    *,
    now: datetime | None = None,
    tenant: Tenant | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    progress: Progress | None = None,
) -> JobReport:
    """Apply every tenant's retention (or only `tenant`'s: then no month is dropped, as a
    month holds every tenant's records); return what was, or would be, deleted.

    Reports `skipped` when another run holds lock 7008. `progress` receives one line per
    partition dropped and per tenant and month with rows deleted.
    """
    now = now or timezone.now()
    batch_size = batch_size or settings.COSTWISE_RETENTION_BATCH_SIZE
    say = progress or (lambda line: None)
    report = JobReport(
        job="record_retention",
        totals={
            "partitions_dropped": 0,
            "partitions_busy": 0,
            "rows_dropped": 0,
            "rows_deleted": 0,
            "keys_deleted": 0,
        },
    )
    with leader_lock(LockId.RETENTION) as leader:
        if not leader:
            report.outcome = SKIPPED
            say("Another retention run holds lock 7008; nothing done.")
            return report.finish()
        tenants = list(Tenant.objects.order_by("pk"))
        if not tenants:
            return report.finish()
        cutoffs = {t.pk: retention_cutoff(t, now=now) for t in tenants}
        partitions = partitions_list()
        if tenant is None:
            partitions = _months_drop(
                partitions,
                horizon=min(cutoffs.values()),
                batch_size=batch_size,
                dry_run=dry_run,
                say=say,
                report=report,
            )
        for each in tenants if tenant is None else [tenant]:
            report.tenants += 1
            _tenant_delete(
                each,
                partitions=partitions,
                cutoff=cutoffs[each.pk],
                batch_size=batch_size,
                dry_run=dry_run,
                say=say,
                report=report,
            )
    return report.finish()


# complexity: each partition is counted, detached, cleared of its keys and dropped in turn; a dry
# run or a busy table stops at its own step
def _months_drop(
    partitions: list[Partition],
    *,
    horizon: datetime,
    batch_size: int,
    dry_run: bool,
    say: Progress,
    report,
) -> list[Partition]:
    """Drop the month partitions ending at or before `horizon`, and any left detached;
    return the partitions kept."""
    kept = [p for p in partitions if p.end is None or p.end > horizon]
    doomed = [p for p in partitions if p not in kept]
    verb = "would drop" if dry_run else "dropped"
    for partition in partitions_detached() + doomed:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), count(idempotency_key) FROM {partition.name}")
            rows, keys = cursor.fetchone()
        if not dry_run:
            try:
                if partition in doomed and not partition_detach(partition=partition):
                    continue
            except OperationalError as exc:
                if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                # A long statement held the table past the lock timeout; the month is past
                # every retention, so the next run drops it, and nothing deletes it row by row.
                report.add({"partitions_busy": 1})
                say(f"{partition.month:%Y-%m}: table busy, {partition.name} left for the next run")
                logger.warning("Retention: could not detach %s in time", partition.name)
                continue
            keys = detached_keys_delete(partition, batch_size=batch_size)
            detached_drop(partition=partition)
        report.add({"partitions_dropped": 1, "rows_dropped": rows, "keys_deleted": keys})
        say(
            f"{partition.month:%Y-%m}: {verb} partition {partition.name} "
            f"({rows} records, {keys} idempotency keys)"
        )
    return kept


def detached_keys_delete(partition: Partition, *, batch_size: int) -> int:
    after, deleted = 0, 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _DETACHED_KEYS_SQL.format(partition=partition.name),
                {"after": after, "limit": batch_size},
            )
            last, rows, keys = cursor.fetchone()
        deleted += keys
        if rows < batch_size:
            return deleted
        after = last


def _tenant_delete(
    tenant: Tenant,
    *,
    partitions: list[Partition],
    cutoff: datetime,
    batch_size: int,
    dry_run: bool,
    say: Progress,
    report,
) -> None:
    verb = "would delete" if dry_run else "deleted"
    params = {"tenant": tenant.pk, "cutoff": cutoff, "limit": batch_size}
    for partition in partitions:
        if partition.start is not None and partition.start >= cutoff:
            continue
        label = "default" if partition.month is None else f"{partition.month:%Y-%m}"
        rows = keys = 0
        if dry_run:
            with connection.cursor() as cursor:
                cursor.execute(_COUNT_SQL.format(partition=partition.name), params)
                rows, keys = cursor.fetchone()
        else:
            while True:
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(_DELETE_SQL.format(partition=partition.name), params)
                    deleted, keys_deleted = cursor.fetchone()
                rows += deleted
                keys += keys_deleted
                if deleted < batch_size:
                    break
        if rows:
            report.add({"rows_deleted": rows, "keys_deleted": keys})
            say(f"{tenant.slug} {label}: {verb} {rows} records, {keys} idempotency keys")
