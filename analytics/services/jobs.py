"""Scheduled snapshot jobs and snapshot backfills (SPEC.md §6, §7).

Each tenant's work runs in its own transaction; a tenant that fails is logged and the loop
moves on. Everything written is an upsert on a natural key, so a job that runs twice, or
two copies side by side, leave the same rows (the snapshot row lock serialises two
computations of one period).
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import CostSnapshot, SnapshotStatus, SnapshotType, Tenant
from analytics.selectors.snapshots import snapshots_stale_recent
from analytics.services.evaluation import snapshot_evaluate
from analytics.services.snapshots import (
    BASELINE_WINDOWS,
    baseline_compute,
    snapshot_compute,
    utc_midnight,
)

logger = logging.getLogger(__name__)

# The daily snapshot/baseline job and multi-period backfills (SPEC.md §6.1). The registry
# lives in costsim, which analytics must not import, so the statements are issued here.
DAILY_LOCK_ID = 7004
# Stale snapshots are recomputed by the hourly job while their period ended this recently.
STALE_RECOMPUTE_HOURS = 48

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"


@dataclass
class JobReport:
    """What a job run did; returned by tasks (JSON) and printed by commands."""

    job: str
    outcome: str = SUCCESS
    tenants: int = 0
    failed_tenants: list[str] = field(default_factory=list)
    snapshots: int = 0
    failed_snapshots: int = 0
    recomputed: int = 0
    evaluated: int = 0
    triggered: int = 0
    baselines: int = 0

    def merge(self, other: "JobReport") -> None:
        for name in ("snapshots", "failed_snapshots", "recomputed", "evaluated", "triggered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.baselines += other.baselines

    def finish(self) -> "JobReport":
        """Settle the outcome (failed = at least one tenant failed) and count the run."""
        if self.outcome != SKIPPED and (self.failed_tenants or self.failed_snapshots):
            self.outcome = FAILED
        metrics.job_runs_total.labels(job=self.job, outcome=self.outcome).inc()
        return self

    def as_dict(self) -> dict:
        return asdict(self)


@contextmanager
def advisory_lock(lock_id: int) -> Iterator[bool]:
    """Yield whether this connection got the session advisory lock; never waits.

    Taken and released on the same connection, as a session lock belongs to the connection
    that took it (PostgreSQL drops it if the process dies).
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])


def active_tenants() -> Iterable[Tenant]:
    return Tenant.objects.active()


def _threshold(threshold_pct: float | None) -> float:
    return settings.ANALYTICS_SNAPSHOT_THRESHOLD_PCT if threshold_pct is None else threshold_pct


def _evaluate(snapshot: CostSnapshot, threshold_pct: float, report: JobReport) -> None:
    """Evaluate a complete snapshot; a failed one is only counted."""
    if snapshot.status != SnapshotStatus.COMPLETE:
        report.failed_snapshots += 1
        return
    result = snapshot_evaluate(snapshot=snapshot, threshold_pct=threshold_pct)
    report.evaluated += result["evaluated"]
    report.triggered += result["triggered"]


def _run_per_tenant(report: JobReport, tenants: Iterable[Tenant], work) -> None:
    for tenant in tenants:
        report.tenants += 1
        tenant_report = JobReport(job=report.job)
        try:
            with transaction.atomic():
                work(tenant, tenant_report)
        except Exception:
            logger.exception("%s failed for tenant %s", report.job, tenant.slug)
            report.failed_tenants.append(tenant.slug)
            continue
        # A failed snapshot is committed as `failed`, so its error stays visible until an
        # operator recomputes it (admin action or compute_snapshots), and it marks the
        # tenant as failed in the report.
        if tenant_report.failed_snapshots:
            report.failed_tenants.append(tenant.slug)
        report.merge(tenant_report)


def hourly_snapshots_run(
    *, now: datetime | None = None, threshold_pct: float | None = None
) -> JobReport:
    """Per active tenant: snapshot and evaluate the previous full hour, then recompute and
    re-evaluate the tenant's stale snapshots whose period ended in the last 48 hours."""
    now = now or timezone.now()
    threshold = _threshold(threshold_pct)
    period_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)

    def work(tenant: Tenant, tenant_report: JobReport) -> None:
        snapshot = snapshot_compute(
            tenant=tenant, snapshot_type=SnapshotType.HOURLY, period_start=period_start
        )
        tenant_report.snapshots += 1
        _evaluate(snapshot, threshold, tenant_report)
        stale_snapshots = list(
            snapshots_stale_recent(tenant=tenant, now=now, hours=STALE_RECOMPUTE_HOURS)
        )
        for stale in stale_snapshots:
            snapshot = snapshot_compute(
                tenant=tenant, snapshot_type=stale.snapshot_type, period_start=stale.period_start
            )
            tenant_report.recomputed += 1
            _evaluate(snapshot, threshold, tenant_report)

    report = JobReport(job="hourly_snapshots")
    _run_per_tenant(report, active_tenants(), work)
    return report.finish()


def daily_snapshots_run(
    *, now: datetime | None = None, threshold_pct: float | None = None
) -> JobReport:
    """Under lock 7004, per active tenant: snapshot and evaluate yesterday (which computes the
    baselines as of yesterday first), then compute the 7- and 30-day baselines as of today.
    Reports `skipped` without touching anything when another process holds the lock."""
    now = now or timezone.now()
    threshold = _threshold(threshold_pct)
    today = now.date()
    report = JobReport(job="daily_snapshots")

    def work(tenant: Tenant, tenant_report: JobReport) -> None:
        snapshot = snapshot_compute(
            tenant=tenant,
            snapshot_type=SnapshotType.DAILY,
            period_start=utc_midnight(today - timedelta(days=1)),
        )
        tenant_report.snapshots += 1
        _evaluate(snapshot, threshold, tenant_report)
        for window_days in BASELINE_WINDOWS:
            tenant_report.baselines += len(
                baseline_compute(tenant=tenant, window_days=window_days, as_of=today)
            )

    with advisory_lock(DAILY_LOCK_ID) as acquired:
        if not acquired:
            logger.info("daily_snapshots skipped: lock %s is held elsewhere", DAILY_LOCK_ID)
            report.outcome = SKIPPED
            return report.finish()
        _run_per_tenant(report, active_tenants(), work)
    return report.finish()


def snapshot_periods(
    *, snapshot_types: Iterable[str], since: date, until: date, now: datetime
) -> list[tuple[datetime, str]]:
    """Every (period_start, type) in the days [since, until], oldest first, none after now."""
    periods = []
    for snapshot_type in snapshot_types:
        step = CostSnapshot.period_length(snapshot_type)
        start, end = utc_midnight(since), utc_midnight(until + timedelta(days=1))
        while start < end and start <= now:
            periods.append((start, snapshot_type))
            start += step
    periods.sort()
    return periods


def latest_periods(*, snapshot_types: Iterable[str], now: datetime) -> list[tuple[datetime, str]]:
    """The previous full hour and/or yesterday."""
    periods = []
    for snapshot_type in snapshot_types:
        if snapshot_type == SnapshotType.HOURLY:
            start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        else:
            start = utc_midnight(now.date() - timedelta(days=1))
        periods.append((start, snapshot_type))
    periods.sort()
    return periods


def snapshots_compute_periods(
    *,
    tenants: Iterable[Tenant],
    periods: list[tuple[datetime, str]],
    evaluate: bool = False,
    threshold_pct: float | None = None,
    progress: Callable[[str], None] | None = None,
    job: str = "snapshot_backfill",
) -> JobReport:
    """Compute (and optionally evaluate) each period for each tenant, in the given order.

    Each period runs in its own transaction, so a long backfill commits as it goes and a
    failure costs one period. Returns the report without recording a job metric.
    """
    threshold = _threshold(threshold_pct)
    report = JobReport(job=job)
    for tenant in tenants:
        report.tenants += 1
        failures_before = report.failed_snapshots
        for period_start, snapshot_type in periods:
            label = f"{tenant.slug} {snapshot_type} {period_start:%Y-%m-%dT%H:%M}Z"
            step = JobReport(job=job)
            try:
                with transaction.atomic():
                    snapshot = snapshot_compute(
                        tenant=tenant, snapshot_type=snapshot_type, period_start=period_start
                    )
                    step.snapshots += 1
                    if evaluate:
                        _evaluate(snapshot, threshold, step)
                    elif snapshot.status != SnapshotStatus.COMPLETE:
                        step.failed_snapshots += 1
            except Exception as exc:
                logger.exception("Snapshot %s failed", label)
                report.failed_snapshots += 1
                if progress:
                    progress(f"{label}: error {exc.__class__.__name__}: {exc}")
                continue
            report.merge(step)
            if progress:
                progress(_progress_line(label, snapshot, step if evaluate else None))
        if report.failed_snapshots > failures_before:
            report.failed_tenants.append(tenant.slug)
    return report


def _progress_line(label: str, snapshot: CostSnapshot, evaluation: JobReport | None) -> str:
    if snapshot.status != SnapshotStatus.COMPLETE:
        return f"{label}: {snapshot.status} v{snapshot.version}: {snapshot.error_message}"
    line = (
        f"{label}: complete v{snapshot.version}, {snapshot.records_processed} records, "
        f"{snapshot.computation_ms} ms"
    )
    if evaluation is not None:
        line += f"; evaluated {evaluation.evaluated}, triggered {evaluation.triggered}"
    return line


def snapshots_backfill(
    *,
    tenants: Iterable[Tenant],
    snapshot_types: Iterable[str],
    since: date,
    until: date,
    evaluate: bool = False,
    threshold_pct: float | None = None,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> JobReport:
    """Every period in the days [since, until], oldest first, under lock 7004.

    Returns the report; its outcome is `skipped` (nothing done) when the lock is held by
    the daily job or another backfill.
    """
    now = now or timezone.now()
    periods = snapshot_periods(snapshot_types=snapshot_types, since=since, until=until, now=now)
    with advisory_lock(DAILY_LOCK_ID) as acquired:
        if not acquired:
            report = JobReport(job="snapshot_backfill", outcome=SKIPPED)
            return report.finish()
        report = snapshots_compute_periods(
            tenants=tenants,
            periods=periods,
            evaluate=evaluate,
            threshold_pct=threshold_pct,
            progress=progress,
        )
    return report.finish()
