"""The job toolkit: one report type, one per-tenant runner, and the scheduled snapshot jobs.

A per-tenant job is a `TenantJob`: what to do for one tenant (`work`), which counters its
result adds to the run's report, and the parameters every tenant of one run shares. The
same spec runs inline (`tenant_job_run`: commands, tests, one process) and fanned out over
Celery workers (`analytics.services.job_runs`: tenant chunks), so the two cannot disagree.

Each tenant's work runs in its own transaction; a tenant that fails is logged, reported and
the loop moves on. Everything written is an upsert on a natural key, so a job that runs
twice, or two copies side by side, leave the same rows (the snapshot row lock serialises
two computations of one period).
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import CostSnapshot, SnapshotStatus, SnapshotType, Tenant
from analytics.selectors.snapshots import snapshots_stale_recent
from analytics.services.evaluation import snapshot_evaluate
from analytics.services.locks import LockId, leader_lock
from analytics.services.snapshots import (
    BASELINE_WINDOWS,
    baseline_compute,
    snapshot_compute,
    utc_midnight,
)
from analytics.services.tenants import TenantDone, tenants_run_each

logger = logging.getLogger(__name__)

# The inline daily snapshot job and multi-period backfills exclude each other with it.
DAILY_LOCK_ID = int(LockId.SNAPSHOTS_DAILY)
# Stale snapshots are recomputed by the hourly job while their period ended this recently.
STALE_RECOMPUTE_HOURS = 48

SUCCESS, FAILED, SKIPPED = "success", "failed", "skipped"


# --- the report ----------------------------------------------------------------------------


@dataclass
class JobReport:
    """What a job run did; returned by services, as JSON by tasks, printed by commands.

    `totals` sums the counters of the tenants that succeeded (a job's own names: snapshots,
    created, feedback_created...); `failed_tenants` lists the slugs of those that did not.
    """

    job: str
    outcome: str = SUCCESS
    tenants: int = 0
    failed_tenants: list[str] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def add(self, counts: Mapping[str, int]) -> None:
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value

    def merge(self, other: "JobReport") -> None:
        self.tenants += other.tenants
        self.failed_tenants.extend(other.failed_tenants)
        self.add(other.totals)

    def finish(self) -> "JobReport":
        """Settle the outcome (failed = at least one tenant failed) and count the run."""
        if self.outcome != SKIPPED and self.failed_tenants:
            self.outcome = FAILED
        metrics.job_runs_total.labels(job=self.job, outcome=self.outcome).inc()
        return self

    def as_dict(self) -> dict:
        return asdict(self)


# --- the per-tenant runner -----------------------------------------------------------------


@dataclass(frozen=True)
class TenantJob:
    """A job that runs once per active tenant; see the module docstring.

    `work(tenant, params)` does one tenant's work inside its transaction; `counts(result)`
    names what it did; `failed(result)` marks a tenant failed whose work committed anyway
    (a snapshot stored as `failed`, kept visible for operators). `params(now)` fixes at
    dispatch what every tenant of the run computes for, as JSON; `period` is the beat tick a
    run belongs to. `shared_lock`: chunks of a fanned-out run hold it shared, so a job that
    takes it exclusively (a snapshot backfill) and the run's chunks exclude each other.
    """

    name: str
    work: Callable[[Tenant, dict], Any]
    counts: Callable[[Any], Mapping[str, int]]
    keys: tuple[str, ...]
    params: Callable[[datetime], dict] = lambda now: {}
    period: Callable[[datetime], datetime] = lambda now: now.replace(
        minute=0, second=0, microsecond=0
    )
    failed: Callable[[Any], bool] | None = None
    shared_lock: LockId | None = None


def tenant_job_run(
    spec: TenantJob,
    *,
    params: dict | None = None,
    tenants: Iterable[Tenant] | None = None,
    on_tenant_done: TenantDone | None = None,
    now: datetime | None = None,
) -> JobReport:
    """Run `spec` inline for each tenant (default: every active one), one transaction each.

    Returns the report without settling it; callers `finish()` it when the run is a job
    of its own. `on_tenant_done(tenant, result, error)` sees each tenant's raw result.
    """
    params = spec.params(now or timezone.now()) if params is None else params
    report = JobReport(job=spec.name, totals=dict.fromkeys(spec.keys, 0))

    def done(tenant: Tenant, result: Any, error: Exception | None) -> None:
        report.tenants += 1
        if error is None:
            report.add(spec.counts(result))
        if error is not None or (spec.failed is not None and spec.failed(result)):
            report.failed_tenants.append(tenant.slug)
        if on_tenant_done:
            on_tenant_done(tenant, result, error)

    tenants_run_each(
        lambda tenant: spec.work(tenant, params),
        label=spec.name,
        tenants=tenants,
        on_tenant_done=done,
    )
    return report


# --- snapshot jobs -------------------------------------------------------------------------


def _threshold(threshold_pct: float | None) -> float:
    return settings.ANALYTICS_SNAPSHOT_THRESHOLD_PCT if threshold_pct is None else threshold_pct


def _evaluate(snapshot: CostSnapshot, threshold_pct: float, counts: Counter) -> None:
    """Evaluate a complete snapshot; a failed one is only counted."""
    if snapshot.status != SnapshotStatus.COMPLETE:
        counts["failed_snapshots"] += 1
        return
    result = snapshot_evaluate(snapshot=snapshot, threshold_pct=threshold_pct)
    counts["evaluated"] += result["evaluated"]
    counts["triggered"] += result["triggered"]


SNAPSHOT_KEYS = ("snapshots", "failed_snapshots", "recomputed", "evaluated", "triggered")


def _hourly_work(tenant: Tenant, params: dict) -> Counter:
    """Snapshot and evaluate the hour `params` names, then recompute and re-evaluate the
    tenant's stale snapshots whose period ended in the 48 hours before `now`."""
    now = datetime.fromisoformat(params["now"])
    threshold = params["threshold_pct"]
    counts: Counter = Counter()
    snapshot = snapshot_compute(
        tenant=tenant,
        snapshot_type=SnapshotType.HOURLY,
        period_start=datetime.fromisoformat(params["period_start"]),
    )
    counts["snapshots"] += 1
    _evaluate(snapshot, threshold, counts)
    stale_snapshots = list(
        snapshots_stale_recent(tenant=tenant, now=now, hours=STALE_RECOMPUTE_HOURS)
    )
    for stale in stale_snapshots:
        snapshot = snapshot_compute(
            tenant=tenant, snapshot_type=stale.snapshot_type, period_start=stale.period_start
        )
        counts["recomputed"] += 1
        _evaluate(snapshot, threshold, counts)
    return counts


def _hourly_params(now: datetime, threshold_pct: float | None = None) -> dict:
    period_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return {
        "now": now.isoformat(),
        "period_start": period_start.isoformat(),
        "threshold_pct": _threshold(threshold_pct),
    }


def _daily_work(tenant: Tenant, params: dict) -> Counter:
    """Snapshot and evaluate the day before `today` (which computes the baselines as of
    that day first), then compute the 7- and 30-day baselines as of `today`."""
    today = date.fromisoformat(params["today"])
    counts: Counter = Counter()
    snapshot = snapshot_compute(
        tenant=tenant,
        snapshot_type=SnapshotType.DAILY,
        period_start=utc_midnight(today - timedelta(days=1)),
    )
    counts["snapshots"] += 1
    _evaluate(snapshot, params["threshold_pct"], counts)
    for window_days in BASELINE_WINDOWS:
        counts["baselines"] += len(
            baseline_compute(tenant=tenant, window_days=window_days, as_of=today)
        )
    return counts


def _daily_params(now: datetime, threshold_pct: float | None = None) -> dict:
    return {"today": now.date().isoformat(), "threshold_pct": _threshold(threshold_pct)}


def _snapshot_failed(counts: Counter) -> bool:
    # A failed snapshot is committed as `failed`, so its error stays visible until an
    # operator recomputes it (admin action or compute_snapshots), and it marks the tenant
    # as failed in the report.
    return counts["failed_snapshots"] > 0


HOURLY_SNAPSHOTS = TenantJob(
    name="hourly_snapshots",
    work=_hourly_work,
    counts=dict,
    keys=SNAPSHOT_KEYS,
    params=_hourly_params,
    failed=_snapshot_failed,
)
DAILY_SNAPSHOTS = TenantJob(
    name="daily_snapshots",
    work=_daily_work,
    counts=dict,
    keys=(*SNAPSHOT_KEYS, "baselines"),
    params=_daily_params,
    period=lambda now: utc_midnight(now.date()),
    failed=_snapshot_failed,
    shared_lock=LockId.SNAPSHOTS_DAILY,
)


def hourly_snapshots_run(
    *, now: datetime | None = None, threshold_pct: float | None = None
) -> JobReport:
    """Per active tenant: snapshot and evaluate the previous full hour, then recompute and
    re-evaluate the tenant's stale snapshots whose period ended in the last 48 hours."""
    now = now or timezone.now()
    params = _hourly_params(now, threshold_pct)
    return tenant_job_run(HOURLY_SNAPSHOTS, params=params).finish()


def daily_snapshots_run(
    *, now: datetime | None = None, threshold_pct: float | None = None
) -> JobReport:
    """Under lock 7004, per active tenant: snapshot and evaluate yesterday (which computes the
    baselines as of yesterday first), then compute the 7- and 30-day baselines as of today.
    Reports `skipped` without touching anything when another process holds the lock."""
    now = now or timezone.now()
    params = _daily_params(now, threshold_pct)
    with leader_lock(LockId.SNAPSHOTS_DAILY) as acquired:
        if not acquired:
            logger.info("daily_snapshots skipped: lock %s is held elsewhere", DAILY_LOCK_ID)
            report = JobReport(job=DAILY_SNAPSHOTS.name, outcome=SKIPPED)
            return report.finish()
        report = tenant_job_run(DAILY_SNAPSHOTS, params=params)
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
    report = JobReport(job=job, totals=dict.fromkeys(SNAPSHOT_KEYS, 0))
    for tenant in tenants:
        report.tenants += 1
        failures_before = report.totals["failed_snapshots"]
        for period_start, snapshot_type in periods:
            label = f"{tenant.slug} {snapshot_type} {period_start:%Y-%m-%dT%H:%M}Z"
            step: Counter = Counter()
            try:
                with transaction.atomic():
                    snapshot = snapshot_compute(
                        tenant=tenant, snapshot_type=snapshot_type, period_start=period_start
                    )
                    step["snapshots"] += 1
                    if evaluate:
                        _evaluate(snapshot, threshold, step)
                    elif snapshot.status != SnapshotStatus.COMPLETE:
                        step["failed_snapshots"] += 1
            except Exception as exc:
                logger.exception("Snapshot %s failed", label)
                report.totals["failed_snapshots"] += 1
                if progress:
                    progress(f"{label}: error {exc.__class__.__name__}: {exc}")
                continue
            report.add(step)
            if progress:
                progress(_progress_line(label, snapshot, step if evaluate else None))
        if report.totals["failed_snapshots"] > failures_before:
            report.failed_tenants.append(tenant.slug)
    return report


def _progress_line(label: str, snapshot: CostSnapshot, evaluation: Counter | None) -> str:
    if snapshot.status != SnapshotStatus.COMPLETE:
        return f"{label}: {snapshot.status} v{snapshot.version}: {snapshot.error_message}"
    line = (
        f"{label}: complete v{snapshot.version}, {snapshot.records_processed} records, "
        f"{snapshot.computation_ms} ms"
    )
    if evaluation is not None:
        line += f"; evaluated {evaluation['evaluated']}, triggered {evaluation['triggered']}"
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
    with leader_lock(LockId.SNAPSHOTS_DAILY) as acquired:
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
