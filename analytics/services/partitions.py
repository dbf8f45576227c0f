"""The month partitions of analytics_costrecord: created ahead, DEFAULT drained, old ones dropped.

Cost records are partitioned by the UTC month of `created_at` (migration 0009). Partition
`analytics_costrecord_pYYYY_MM` holds [first of the month, first of the next); the DEFAULT
partition `analytics_costrecord_default` catches a record whose month has no partition yet
(a created_at far in the past or the future), so ingest never fails for want of one.

PostgreSQL refuses to attach a partition whose range has rows in DEFAULT, so creating one
moves those rows out of DEFAULT into the new table first, in the same transaction. Every
change to the set of partitions (create, detach) takes lock 7007 and checks again what
exists under it, so two runs side by side create each partition once and the second one
finds nothing to do.
"""

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.models import Tenant
from analytics.services.jobs import JobReport
from analytics.services.locks import LockId

logger = logging.getLogger(__name__)

TABLE = "analytics_costrecord"
DEFAULT_PARTITION = f"{TABLE}_default"
_MONTH_NAME = re.compile(rf"^{TABLE}_p(\d{{4}})_(\d{{2}})$")
# DDL on the parent waits at most this long for its lock: a long read must not leave the
# statement queued with every ingest queued behind it. The job fails and runs again later.
DDL_LOCK_TIMEOUT = "3s"


def month_of(moment: datetime) -> date:
    """The first day of `moment`'s UTC month."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_start(month: date) -> datetime:
    return datetime(month.year, month.month, 1, tzinfo=UTC)


def partition_name(month: date) -> str:
    return f"{TABLE}_p{month:%Y_%m}"


@dataclass(frozen=True)
class Partition:
    """A partition of analytics_costrecord; `month` is None for DEFAULT."""

    name: str
    month: date | None

    @property
    def start(self) -> datetime | None:
        return None if self.month is None else month_start(self.month)

    @property
    def end(self) -> datetime | None:
        return None if self.month is None else month_start(month_add(self.month, 1))


def partitions_list() -> list[Partition]:
    """The month partitions in month order, then DEFAULT."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = %s::regclass",
            [TABLE],
        )
        names = [name for (name,) in cursor.fetchall()]
    months = []
    has_default = False
    for name in names:
        if name == DEFAULT_PARTITION:
            has_default = True
        elif match := _MONTH_NAME.match(name):
            months.append(Partition(name, date(int(match[1]), int(match[2]), 1)))
    months.sort(key=lambda partition: partition.month)
    return months + ([Partition(DEFAULT_PARTITION, None)] if has_default else [])


def retention_horizon(*, now: datetime) -> datetime:
    """The instant before which every tenant's records are past its retention."""
    longest = Tenant.objects.aggregate(
        days=Max(Coalesce("retention_days", settings.COSTWISE_RECORD_RETENTION_DAYS))
    )["days"]
    return now - timedelta(days=longest or settings.COSTWISE_RECORD_RETENTION_DAYS)


@transaction.atomic
def partition_create(*, month: date) -> int | None:
    """Create the partition of `month`, moving its rows out of DEFAULT; return how many rows
    moved, or None when the partition already exists.

    The partition is built as a table of its own, the rows go straight from DEFAULT into it,
    and then it is attached. Statements on the partitions themselves fire none of the
    parent's statement triggers, so a moved row counts as neither a delete nor a new record
    (rollups keep counting it once). ATTACH takes the parent's SHARE UPDATE EXCLUSIVE lock,
    which ingest and reads do not wait for; it scans DEFAULT under its own lock to check that
    no row of the month is left there.
    """
    name = partition_name(month)
    start, end = month_start(month), month_start(month_add(month, 1))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(LockId.PARTITIONS)])
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return None
        cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        cursor.execute(
            f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"""
            WITH moved AS (
                DELETE FROM {DEFAULT_PARTITION}
                WHERE created_at >= %(start)s AND created_at < %(end)s
                RETURNING *
            )
            INSERT INTO {name} SELECT * FROM moved
            """,
            {"start": start, "end": end},
        )
        moved = cursor.rowcount
        cursor.execute(
            f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
            [start, end],
        )
    logger.info("Created partition %s (%s rows moved out of DEFAULT)", name, moved)
    return moved


def partitions_wanted(*, now: datetime, months_ahead: int) -> list[date]:
    """The months that need a partition: this month and `months_ahead` after it, and every
    month holding rows in DEFAULT that is not yet past every tenant's retention."""
    this_month = month_of(now)
    wanted = {month_add(this_month, n) for n in range(months_ahead + 1)}
    horizon_month = month_of(retention_horizon(now=now))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM {DEFAULT_PARTITION}"
        )
        wanted.update(
            month for (moment,) in cursor.fetchall() if (month := month_of(moment)) >= horizon_month
        )
    return sorted(wanted)


def partitions_maintain(
    *, now: datetime | None = None, months_ahead: int | None = None
) -> JobReport:
    """Create the partitions `partitions_wanted` names that do not exist yet, each in its own
    transaction; safe to run twice and side by side."""
    now = now or timezone.now()
    if months_ahead is None:
        months_ahead = settings.COSTWISE_PARTITION_MONTHS_AHEAD
    existing = {partition.month for partition in partitions_list()}
    report = JobReport(job="maintain_partitions", totals={"created": 0, "rows_moved": 0})
    for month in partitions_wanted(now=now, months_ahead=months_ahead):
        if month in existing:
            continue
        moved = partition_create(month=month)
        if moved is not None:
            report.add({"created": 1, "rows_moved": moved})
    return report.finish()


def partition_detach(*, partition: Partition) -> bool:
    """Detach `partition` from the table; return False when it is not attached (any more).

    DETACH takes the parent's ACCESS EXCLUSIVE lock (DETACH ... CONCURRENTLY is refused while
    a DEFAULT partition exists), but only for a catalog change: it waits at most
    DDL_LOCK_TIMEOUT for running statements and holds the lock for milliseconds. Records of
    the month sent from then on land in DEFAULT.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(LockId.PARTITIONS)])
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pg_inherits"
            " WHERE inhparent = %s::regclass AND inhrelid = to_regclass(%s))",
            [TABLE, partition.name],
        )
        if not cursor.fetchone()[0]:
            return False
        cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {partition.name}")
    return True


def detached_drop(*, partition: Partition) -> None:
    """Drop a detached month partition; it locks nothing but itself."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {partition.name}")
    logger.info("Dropped partition %s", partition.name)


def partitions_detached() -> list[Partition]:
    """Month partitions detached and not dropped yet (a run stopped between the two)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c"
            " WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
            " AND c.relname LIKE %s AND NOT c.relispartition",
            [f"{TABLE}\\_p%"],
        )
        names = [name for (name,) in cursor.fetchall()]
    return sorted(
        (
            Partition(name, date(int(match[1]), int(match[2]), 1))
            for name in names
            if (match := _MONTH_NAME.match(name))
        ),
        key=lambda partition: partition.month,
    )
