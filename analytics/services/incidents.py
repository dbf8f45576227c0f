"""Incidents: what detection tells a person, built from the raw anomalies of a run.

Each rule's anomaly is first judged by the incident gate: its window's spend against the
seasonal, trend-aware expectation of `analytics.services.expectation` (scaled by planned
activity), which must pass both money floors of the tenant's settings and the z threshold;
a user's, feature's or model's change also faces a stricter (Bonferroni) z, must add a share
of the tenant's spend and must show in the tenant's total. Budget anomalies are material by
definition (the budget is the threshold).

Grouping: an anomaly joins an incident of its family (its budget's, or the tenant's cost
changes) whose window it overlaps or touches, preferring one that already speaks for its
cause, then one the same run opened, then (for an entity) one about the whole tenant. A
material anomaly with nothing to join opens a new incident unless a false-alarm label
suppresses it; an immaterial one joins as evidence or stays on its own. Each touched
incident's window, kind, scope, numbers and root causes are then recomputed from the
expectation, so running a day twice leaves the same incident.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from analytics import metrics
from analytics.errors import Conflict
from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    EntityType,
    FeedbackLabel,
    Incident,
    IncidentKind,
    Tenant,
)
from analytics.selectors.incidents import (
    DIMENSIONS,
    SERIES_DAYS,
    TENANT,
    DetectionContext,
    false_alarms_since,
    incidents_near,
)
from analytics.services import detection as engine
from analytics.services import expectation
from analytics.services.anomaly_lifecycle import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    RESOLUTIONS,
    anomalies_acknowledge,
    anomalies_label,
    anomalies_resolve,
)
from analytics.services.expectation import Scope, WindowJudgement
from analytics.services.locks import LockId
from analytics.signals import (
    incident_changed,
    incident_escalated,
    incident_opened,
    incident_resolved,
)

KIND_OF = {
    AnomalyType.ABSOLUTE_SPIKE: IncidentKind.SPIKE,
    AnomalyType.SUSTAINED_DRIFT: IncidentKind.DRIFT,
    AnomalyType.STATISTICAL_OUTLIER: IncidentKind.OUTLIER,
    AnomalyType.BUDGET_WARNING: IncidentKind.BUDGET,
    AnomalyType.BUDGET_EXCEEDED: IncidentKind.BUDGET,
}
# The kind an incident shows when its anomalies disagree: the longest-lived change wins.
KIND_PRIORITY = {
    IncidentKind.DRIFT: 3,
    IncidentKind.SPIKE: 2,
    IncidentKind.OUTLIER: 1,
    IncidentKind.BUDGET: 0,
}
# An entity's own incident also needs its part of the tenant's rise beyond the tenant's noise.
ENTITY_TENANT_Z = 1.5
SEVERITY_RANK = {"LOW": 0, "MEDIUM": 1, "HIGH": 2, "CRITICAL": 3}
# One transaction-scoped advisory lock per tenant (classid, tenant id): detection runs for
# the same tenant queue up, so two of them never open the same incident twice.
DETECTION_LOCK_CLASS = int(LockId.DETECTION)


# --- The gate -----------------------------------------------------------------------------


@dataclass
class Verdict:
    """What the gate decided about one anomaly."""

    anomaly: Anomaly
    kind: str
    scope: Scope
    start: date
    end: date
    material: bool
    reason: str
    judgement: WindowJudgement | None = None
    suppressed_by: int | None = None  # the false-alarm incident that silenced it
    cause: Scope | None = None  # a material tenant-level change: the entity that explains it
    # The main causes of the incidents it touches, measured against their recent level, and
    # the entity that then explains it (when one carries a main share): the cause of a new
    # increase on top of an ongoing change.
    ongoing: tuple[Scope, ...] = ()
    new_cause: Scope | None = None

    @property
    def family(self) -> tuple:
        """Anomalies of one family group together: one budget, or the tenant's cost changes."""
        return ("budget", self.anomaly.budget_id) if self.kind == IncidentKind.BUDGET else ("cost",)


def anomaly_window(anomaly: Anomaly) -> tuple[date, date]:
    """The days an anomaly speaks for: a spike's or drift's streak, an outlier's day."""
    day = anomaly.anomaly_date
    if anomaly.anomaly_type in (AnomalyType.ABSOLUTE_SPIKE, AnomalyType.SUSTAINED_DRIFT):
        return day - timedelta(days=max(anomaly.breach_count, 1) - 1), day
    return day, day


def anomaly_reach(anomaly: Anomaly) -> tuple[date, date]:
    """The days an anomaly is judged on and grouped by: its window, a drift's rolling week.

    A drift is measured over its rolling week, and the level it reports rose some days before
    the rule could tell: its week is what links it to the first days of the change.
    """
    start, end = anomaly_window(anomaly)
    if anomaly.anomaly_type == AnomalyType.SUSTAINED_DRIFT:
        start = end - timedelta(days=engine.DRIFT_ROLLING_DAYS - 1)
    return start, end


def _fallback_judgement(anomaly: Anomaly) -> WindowJudgement:
    """A rule's own numbers, when there is too little history for a model."""
    days = engine.DRIFT_ROLLING_DAYS if anomaly.anomaly_type == AnomalyType.SUSTAINED_DRIFT else 1
    return expectation.judge_window(
        actual=[anomaly.current_value_cents] * days,
        expected=[anomaly.expected_value_cents] * days,
        spread=0.0,
    )


def anomaly_verdict(anomaly: Anomaly, context: DetectionContext) -> Verdict:
    kind = KIND_OF[anomaly.anomaly_type]
    scope = (anomaly.entity_type, anomaly.entity_id)
    start, end = anomaly_reach(anomaly)
    verdict = Verdict(anomaly, kind, scope, start, end, material=False, reason="")
    if kind == IncidentKind.BUDGET:
        verdict.material, verdict.reason = True, "budget threshold passed"
        return verdict
    settings = context.settings
    if not settings.monitors(anomaly.entity_type):
        verdict.reason = f"{anomaly.entity_type} is not a monitored dimension"
        return verdict
    history = context.history_days(scope, start)
    if history >= settings.min_history_days:
        judgement = context.judge(scope, start, end)
    elif scope == TENANT:
        judgement = _fallback_judgement(anomaly)
    else:
        verdict.reason = f"{history} days of history, {settings.min_history_days} needed"
        return verdict
    verdict.judgement = judgement
    min_cents, min_pct = settings.floors(kind)
    z_threshold = settings.z_threshold
    if scope != TENANT:
        z_threshold = expectation.entity_z_threshold(z_threshold, context.monitored_entities())
    if judgement is None:
        verdict.reason = "no expectation"
    elif judgement.passes(min_cents=min_cents, min_pct=min_pct, z_threshold=z_threshold):
        verdict.material, verdict.reason = True, "material"
        if scope != TENANT:
            _require_tenant_effect(verdict, context, z_threshold)
    else:
        verdict.reason = _why_not(judgement, min_cents, min_pct, z_threshold)
    return verdict


def _require_tenant_effect(verdict: Verdict, context: DetectionContext, z_threshold: float) -> None:
    """An entity's change must also move the tenant's bill to be an incident of its own.

    It must add `entity_min_tenant_pct` of the tenant's expected spend, and its own part of
    the tenant's rise (what it added, at most what the bill rose) must stand out of the
    tenant's noise (z >= 1.5). Spend that only moved between entities (one user busier, the
    others quieter) leaves the bill where it was; a few dollars of a small, erratic entity on
    a day the tenant happens to run high for other reasons are not what moved the bill.
    Overwhelming evidence of its own (z at least 1.5 times its threshold) needs only a tenant
    total that is not below expected, since a noisy tenant can hide a real but smaller
    change.
    """
    tenant = context.judge(TENANT, verdict.start, verdict.end)
    if tenant is None or tenant.expected <= 0:
        return
    share = verdict.judgement.impact / tenant.expected * 100
    minimum = context.settings.entity_min_tenant_pct
    overwhelming = tenant.z_score >= 0 and verdict.judgement.z_score >= 1.5 * z_threshold
    own_z = _z_of_part(tenant, verdict.judgement.impact)
    if share < minimum:
        reason = f"adds {share:.1f}% to the tenant's spend, under the {minimum:g}% floor"
    elif overwhelming:
        return
    elif tenant.z_score < ENTITY_TENANT_Z:
        reason = f"the tenant's total is within its noise (z {tenant.z_score:.2f})"
    elif own_z < ENTITY_TENANT_Z:
        reason = f"its part of the tenant's rise is within its noise (z {own_z:.2f})"
    else:
        return
    verdict.material, verdict.reason = False, reason


def _z_of_part(whole: WindowJudgement, part: float) -> float:
    """The z of `part` of a window's rise, at most all of it (z grows with the impact)."""
    if whole.impact > 0 and part < whole.impact:
        return whole.z_score * part / whole.impact
    return whole.z_score


def _why_not(judgement: WindowJudgement, min_cents: float, min_pct: float, z: float) -> str:
    if judgement.impact < min_cents:
        return f"impact {judgement.impact:.2f} cents below the {min_cents:g} cents floor"
    if judgement.impact_pct is not None and judgement.impact_pct < min_pct:
        return f"impact {judgement.impact_pct:.1f}% below the {min_pct:g}% floor"
    return f"z {judgement.z_score:.2f} within the noise (threshold {z:g})"


def _suppressor(verdict: Verdict, false_alarms: Sequence[Incident], days: int) -> Incident | None:
    """A false-alarm incident of the same scope and kind that still silences this verdict."""
    for incident in false_alarms:
        if verdict.start > incident.last_seen_on + timedelta(days=days):
            continue
        scopes = {(incident.entity_type, incident.entity_id)}
        scopes |= {(a.entity_type, a.entity_id) for a in incident.anomalies.all()}
        if verdict.scope not in scopes or verdict.kind != incident.kind:
            continue
        labelled_days = (incident.last_seen_on - incident.started_on).days + 1
        labelled = incident.impact_cents / labelled_days
        judged = verdict.judgement.impact if verdict.judgement else 0.0
        judged_days = (verdict.end - verdict.start).days + 1
        if judged / judged_days < 2 * labelled:
            return incident
    return None


# --- Grouping -----------------------------------------------------------------------------


@dataclass
class IncidentOutcome:
    incidents: list[Incident] = field(default_factory=list)  # opened or updated, oldest first
    opened: list[Incident] = field(default_factory=list)
    escalated: list[Incident] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def suppressed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.suppressed_by is not None]


def _touches(incident: Incident, verdict: Verdict) -> bool:
    return verdict.start <= incident.last_seen_on + timedelta(
        days=1
    ) and verdict.end >= incident.started_on - timedelta(days=1)


# A root cause carrying at least this share of an incident's increase is one of its causes.
MAIN_CAUSE_SHARE = 0.25


def _main_causes(incidents: Sequence[Incident]) -> dict[int, set[Scope]]:
    """Per incident, the scopes that explain its change: its own and its main root causes."""
    return {
        incident.pk: {(incident.entity_type, incident.entity_id)}
        | {
            (c["entity_type"], c["entity_id"])
            for c in incident.root_causes
            if c["share"] >= MAIN_CAUSE_SHARE
        }
        for incident in incidents
    }


def _overlaps(incident: Incident, verdict: Verdict) -> bool:
    return verdict.start <= incident.last_seen_on and verdict.end >= incident.started_on


# complexity: the order of preference of the docstring, one rule each; split up, the grouping rule
# would be scattered
def _incident_for(
    verdict: Verdict,
    nearby: Sequence[Incident],
    causes: dict[int, set[Scope]],
    members: dict[int, set[Scope]],
    opened: Sequence[Incident],
    context: DetectionContext,
) -> Incident | None:
    """The incident an anomaly belongs to, if any.

    An anomaly that already belongs to one stays there. Otherwise, among the incidents of its
    family whose window it overlaps or touches, it joins, in this order of preference: one
    that already speaks for its cause (an entity as a member or main root cause; a material
    tenant-level change through the incident's scope or main root causes), one this run
    opened, and, for an entity, one about the whole tenant (a tenant-level change and the
    entities that explain it are one incident). Incidents whose window overlaps the
    anomaly's are tried before those it only touches, so a change on a day belongs to that
    day's incident rather than to yesterday's. A material change beside an unrelated
    incident (a runaway user during a drift) is an incident of its own, and so is a change
    beside an incident that no longer runs, only echoes in the drift rule's rolling week.
    """
    for incident in nearby:
        if incident.pk == verdict.anomaly.incident_id:
            return incident
    touching = [
        incident
        for incident in nearby
        if _family_of(incident) == verdict.family and _touches(incident, verdict)
    ]
    if verdict.family == ("cost",):
        touching = [i for i in touching if _still_running(i, verdict.anomaly, context)]
    if not touching or verdict.family != ("cost",):
        return touching[0] if touching else None
    cause = verdict.scope
    if cause == TENANT and verdict.material:
        ongoing = set().union(*(causes.get(incident.pk, ()) for incident in touching))
        verdict.ongoing = tuple(sorted(ongoing - {TENANT}, key=str))
        verdict.cause, verdict.new_cause = _main_causes_of(verdict, context)
        cause = verdict.cause or TENANT

    def speaks_for(incident: Incident) -> bool:
        if cause == TENANT:
            return True
        main = causes.get(incident.pk, ())
        if verdict.scope != TENANT:
            # An entity that moved with an incident's change (a member) is that change again.
            return cause in main or cause in members.get(incident.pk, ())
        # A tenant-level change is the incident's change when the incident's main causes
        # explain it, unless something else is what rose against its recent level.
        return cause in main and (verdict.new_cause is None or verdict.new_cause in main)

    opened_now = {incident.pk for incident in opened}
    preferences = (
        speaks_for,
        lambda incident: incident.pk in opened_now,
        lambda incident: verdict.scope != TENANT and incident.entity_type == EntityType.TENANT,
    )
    overlapping = [incident for incident in touching if _overlaps(incident, verdict)]
    adjacent = [incident for incident in touching if not _overlaps(incident, verdict)]
    for candidates in (overlapping, adjacent):
        for prefers in preferences:
            for incident in candidates:
                if prefers(incident):
                    return incident
    return None


def _still_running(incident: Incident, anomaly: Anomaly, context: DetectionContext) -> bool:
    """Whether an incident's change still runs on the days just before an anomaly's own days.

    A one-day jump stays in the 7-day average for a week, so the drift rule keeps reporting
    it: an echo that extends the incident without anything rising. A later change beside
    such an echo is not the incident's change: it takes the incident only when the
    incident's scope still ran above its expectation over the days before it (the drift's
    money floors, beyond its noise). Days that reach back to the incident's first day are
    the incident itself, so a change right after a jump still joins it.
    """
    start, _ = anomaly_window(anomaly)
    since = start - timedelta(days=expectation.RECENT_LEVEL_DAYS)
    if since <= incident.started_on:
        return True
    judgement = context.judge(
        (incident.entity_type, incident.entity_id), since, start - timedelta(days=1)
    )
    if judgement is None:
        return True
    min_cents, min_pct = context.settings.floors(IncidentKind.DRIFT)
    return judgement.passes(min_cents=min_cents, min_pct=min_pct, z_threshold=ENTITY_TENANT_Z)


def _main_causes_of(
    verdict: Verdict, context: DetectionContext
) -> tuple[Scope | None, Scope | None]:
    """The entity that explains a tenant-level change best over the change's own days, and
    the one that does once every entity is measured against its recent level (asked only
    beside ongoing incidents, whose main causes are `verdict.ongoing`).

    The second is given only when it carries a main share of the increase. The cause of an
    ongoing change that is still running high (a drift its fitted level lags) did not cause
    a new increase on top of it; the entity that rose against its own recent level did.
    """
    increase = verdict.judgement.impact if verdict.judgement else None
    ranked = _root_causes(None, verdict.start, verdict.end, increase, context)
    cause = (ranked[0]["entity_type"], ranked[0]["entity_id"]) if ranked else None
    if increase is None or not verdict.ongoing:
        return cause, None
    # Every entity against its recent level: one that moved with the ongoing change (a user
    # of the drifting feature) is not a new cause either.
    everyone = [scope for scope in context.series().values if scope[0] in DIMENSIONS]
    recent = _root_causes(None, verdict.start, verdict.end, increase, context, ongoing=everyone)
    if recent and recent[0]["share"] >= MAIN_CAUSE_SHARE:
        return cause, (recent[0]["entity_type"], recent[0]["entity_id"])
    return cause, None


def _family_of(incident: Incident) -> tuple:
    return ("budget", incident.budget_id) if incident.kind == IncidentKind.BUDGET else ("cost",)


# complexity: judging, grouping (open, suppress, join) and refreshing share the run's state (nearby
# incidents, causes, members) in one transaction
@transaction.atomic(savepoint=False)  # part of the detection run's transaction
def incidents_record(
    *, tenant: Tenant, anomalies: Sequence[Anomaly], context: DetectionContext
) -> IncidentOutcome:
    """Judge a run's anomalies, group them into incidents and refresh those incidents."""
    outcome = IncidentOutcome()
    judged = [a for a in anomalies if a.anomaly_type in KIND_OF]
    if not judged:
        return outcome
    verdicts = [anomaly_verdict(anomaly, context) for anomaly in judged]
    # Material verdicts first (tenant-level before entities) so evidence can join them.
    verdicts.sort(key=lambda v: (not v.material, v.scope != TENANT, v.start))
    outcome.verdicts = verdicts

    first = min(v.start for v in verdicts) - timedelta(days=1)
    last = max(v.end for v in verdicts) + timedelta(days=1)
    nearby = incidents_near(tenant=tenant, first_day=first, last_day=last)
    false_alarms = None
    touched: dict[int, Incident] = {}
    joined: dict[int, list[Anomaly]] = {}  # incident id -> anomalies that join it now
    now = timezone.now()
    causes = _main_causes(nearby)
    members = {incident.pk: set(incident.member_scopes) for incident in nearby}
    for verdict in verdicts:
        target = _incident_for(verdict, nearby, causes, members, outcome.opened, context)
        if target is None and verdict.material:
            if false_alarms is None:
                # Any verdict of this run starts within the series the run read.
                days = context.settings.suppression_days + SERIES_DAYS
                since = context.as_of - timedelta(days=days)
                false_alarms = false_alarms_since(tenant=tenant, since=since)
            suppressor = _suppressor(verdict, false_alarms, context.settings.suppression_days)
            if suppressor is not None:
                verdict.material, verdict.suppressed_by = False, suppressor.pk
                verdict.reason = f"suppressed by false-alarm incident {suppressor.pk}"
                continue
            target = _incident_open(tenant=tenant, verdict=verdict, now=now)
            nearby.append(target)
            outcome.opened.append(target)
        if target is None:
            continue
        touched[target.pk] = target
        members.setdefault(target.pk, set()).add(verdict.scope)
        if verdict.cause is not None and target in outcome.opened:
            causes.setdefault(target.pk, set()).add(verdict.new_cause or verdict.cause)
        if verdict.anomaly.incident_id != target.pk:
            verdict.anomaly.incident_id = target.pk
            joined.setdefault(target.pk, []).append(verdict.anomaly)

    opened_ids = {incident.pk for incident in outcome.opened}
    for incident_id, new_members in joined.items():
        incident = touched[incident_id]
        Anomaly.objects.filter(pk__in=[a.pk for a in new_members]).update(incident=incident)
        if incident_id not in opened_ids:
            # A closed (or acknowledged) incident takes new evidence in its own state.
            _follow([a for a in new_members if a.status != incident.status], incident)

    for incident in sorted(touched.values(), key=lambda i: i.pk):
        before = incident.severity
        _incident_refresh(incident=incident, context=context, now=now)
        outcome.incidents.append(incident)
        went_up = SEVERITY_RANK[incident.severity] > SEVERITY_RANK[before]
        # A closed incident that takes new evidence is not news: nobody is told again.
        if went_up and incident not in outcome.opened and incident.status in OPEN_STATUSES:
            outcome.escalated.append(incident)
    for incident in outcome.opened:
        incident_changed.send(sender=Incident, incident=incident, event="opened")
    for incident in outcome.escalated:
        incident_changed.send(sender=Incident, incident=incident, event="escalated")
    transaction.on_commit(lambda: _announce(outcome))
    return outcome


def _incident_open(*, tenant: Tenant, verdict: Verdict, now) -> Incident:
    anomaly = verdict.anomaly
    incident = Incident(
        tenant=tenant,
        kind=verdict.kind,
        severity=anomaly.severity,
        entity_type=anomaly.entity_type,
        entity_id=anomaly.entity_id,
        budget_id=anomaly.budget_id if verdict.kind == IncidentKind.BUDGET else None,
        started_on=anomaly_window(anomaly)[0],
        last_seen_on=verdict.end,
        title=anomaly.message[:300],
        expected_cents=anomaly.expected_value_cents,
        actual_cents=anomaly.current_value_cents,
        impact_cents=0.0,
        opened_at=now,
        updated_at=now,
        metadata={"opened_by": _verdict_summary(verdict)},
    )
    incident.save()
    return incident


def _verdict_summary(verdict: Verdict) -> dict:
    """Why an incident was opened: the anomaly and the gate's numbers, kept for operators."""
    judgement = verdict.judgement
    return {
        "anomaly_id": verdict.anomaly.pk,
        "anomaly_type": verdict.anomaly.anomaly_type,
        "entity_type": verdict.scope[0],
        "entity_id": verdict.scope[1],
        "window": [verdict.start.isoformat(), verdict.end.isoformat()],
        "impact_cents": round(judgement.impact, 2) if judgement else None,
        "impact_pct": engine.finite_or_none(judgement.impact_pct or 0, 2) if judgement else None,
        "z_score": engine.finite_or_none(judgement.z_score, 2) if judgement else None,
        **(
            {"on_top_of": [list(scope) for scope in verdict.ongoing]}
            if verdict.new_cause is not None
            else {}
        ),
    }


def _follow(anomalies: Sequence[Anomaly], incident: Incident) -> None:
    """Give anomalies the lifecycle state of the incident they joined."""
    if not anomalies:
        return
    fields = {
        "status": incident.status,
        "acknowledged_at": incident.acknowledged_at,
        "acknowledged_by": incident.acknowledged_by,
        "resolved_at": incident.resolved_at,
        "resolved_by": incident.resolved_by,
        "resolution_notes": incident.resolution_notes,
    }
    Anomaly.objects.filter(pk__in=[a.pk for a in anomalies]).update(**fields)
    for anomaly in anomalies:
        for name, value in fields.items():
            setattr(anomaly, name, value)


# --- Refresh ------------------------------------------------------------------------------


def _incident_refresh(*, incident: Incident, context: DetectionContext, now) -> None:
    """Recompute window, kind, scope, numbers, severity, root causes and title from members."""
    member_rows = list(incident.anomalies.order_by())
    if not member_rows:
        return
    windows = [anomaly_window(a) for a in member_rows]
    incident.started_on = min(start for start, _ in windows)
    incident.last_seen_on = max(end for _, end in windows)
    if incident.kind == IncidentKind.BUDGET:
        _refresh_budget(incident, member_rows, context)
    else:
        _refresh_cost_change(incident, member_rows, context)
    incident.updated_at = now
    # The window check constraint is the table's; validating it here would cost a query.
    incident.full_clean(exclude=["tenant", "budget"], validate_constraints=False)
    incident.save()


# complexity: an incident's kind, scope, judgement, severity, root causes and metadata each depend
# on the ones before
def _refresh_cost_change(
    incident: Incident, member_rows: list[Anomaly], context: DetectionContext
) -> None:
    kinds = [KIND_OF[a.anomaly_type] for a in member_rows if a.anomaly_type in KIND_OF]
    tenant_kinds = [
        KIND_OF[a.anomaly_type]
        for a in member_rows
        if a.entity_type == EntityType.TENANT and a.anomaly_type in KIND_OF
    ]
    incident.kind = max(tenant_kinds or kinds, key=KIND_PRIORITY.__getitem__)
    first = incident.started_on
    last = context.complete_day(incident.last_seen_on, first)
    entities = {(a.entity_type, a.entity_id) for a in member_rows}
    # Opened on top of an ongoing change: that change's causes are measured against their
    # recent level, so what rose explains this incident, not what was already running high.
    ongoing = {
        tuple(scope) for scope in incident.metadata.get("opened_by", {}).get("on_top_of", ())
    }
    if TENANT in entities:
        # The tenant changed: every user, feature and model competes to explain it.
        scope, causes = TENANT, None
    else:
        # Only entities changed: the one that explains its change best is the incident's
        # scope; every entity then competes for that scope's increase, so the users and
        # models that carry a feature's growth are listed (and join the incident) too.
        members = _root_causes(
            sorted(entities, key=str), first, last, None, context, ongoing=ongoing
        )
        scope = (members[0]["entity_type"], members[0]["entity_id"]) if members else min(entities)
        causes = members and _root_causes(
            None, first, last, members[0]["delta_cents"], context, ongoing=ongoing
        )
    incident.entity_type, incident.entity_id = scope
    judgement = context.judge(scope, first, last)
    tenant_judgement = judgement if scope == TENANT else context.judge(TENANT, first, last)
    if judgement is None:  # too little history: the members' own numbers
        judgement = expectation.judge_window(
            actual=[a.current_value_cents for a in member_rows if a.entity_type == scope[0]],
            expected=[a.expected_value_cents for a in member_rows if a.entity_type == scope[0]],
            spread=0.0,
        )
    _set_numbers(incident, judgement)
    min_cents, _ = context.settings.floors(incident.kind)
    severity_basis = tenant_judgement or judgement
    incident.severity = engine.incident_severity(
        impact_pct=severity_basis.impact_pct,
        impact_cents=judgement.impact,
        min_impact_cents=min_cents,
    )
    if causes is None:
        causes = _root_causes(None, first, last, judgement.impact, context, ongoing=ongoing)
    incident.root_causes = causes
    incident.metadata = {
        **(
            {"opened_by": incident.metadata["opened_by"]}
            if "opened_by" in incident.metadata
            else {}
        ),
        "z_score": engine.finite_or_none(judgement.z_score, 4),
        "tenant_impact_pct": engine.finite_or_none(tenant_judgement.impact_pct, 2)
        if tenant_judgement and tenant_judgement.impact_pct is not None
        else None,
        "expectation_version": expectation.EXPECTATION_VERSION,
    }
    incident.title = engine.incident_title(
        kind=incident.kind,
        scope_label=engine.entity_label(*scope),
        impact_cents=incident.impact_cents,
        impact_pct=incident.impact_pct,
        started_on=first,
        last_seen_on=last,
    )


def _refresh_budget(incident: Incident, member_rows: list[Anomaly], context: DetectionContext):
    latest = max(member_rows, key=lambda a: (a.anomaly_date, SEVERITY_RANK[a.severity]))
    incident.entity_type, incident.entity_id = latest.entity_type, latest.entity_id
    incident.severity = max((a.severity for a in member_rows), key=SEVERITY_RANK.__getitem__)
    incident.actual_cents = latest.current_value_cents
    incident.expected_cents = latest.expected_value_cents  # the limit
    incident.impact_cents = incident.actual_cents - incident.expected_cents
    incident.impact_pct = latest.deviation_pct - 100 if latest.deviation_pct is not None else None
    period_start = latest.anomaly_date
    if latest.budget_period == "monthly":
        period_start = latest.anomaly_date.replace(day=1)
    scope = (latest.entity_type, latest.entity_id)
    judgement = context.judge(scope, period_start, latest.anomaly_date)
    increase = judgement.impact if judgement else 0.0
    candidates = None if scope == TENANT else [scope]
    incident.root_causes = _root_causes(
        candidates, period_start, latest.anomaly_date, increase, context
    )
    incident.metadata = {"budget_period": latest.budget_period, "usage_pct": latest.deviation_pct}
    incident.title = latest.message[:300]


def _set_numbers(incident: Incident, judgement: WindowJudgement) -> None:
    incident.expected_cents = round(judgement.expected, 4)
    incident.actual_cents = round(judgement.actual, 4)
    incident.impact_cents = round(judgement.impact, 4)
    incident.impact_pct = (
        round(judgement.impact_pct, 2) if judgement.impact_pct is not None else None
    )


# complexity: its callers' cases (given scopes or every entity, a given increase or the largest)
# share the one ranking
def _root_causes(
    candidates: Sequence[Scope] | None,
    first: date,
    last: date,
    increase: float | None,
    context: DetectionContext,
    *,
    ongoing: Collection[Scope] = (),
) -> list[dict]:
    """Entities ranked by the share of the increase they carry over the days first ... last.

    `candidates` None lets every user, feature and model of the tenant compete for the
    tenant's `increase`; otherwise only the given scopes compete, for the largest increase
    among them when `increase` is None. The expectation of an `ongoing` scope (a cause of
    an ongoing change) is lifted to its recent level when it has been running above it
    (`expectation.recent_level_factor`).
    """
    if increase is not None and increase <= 0:
        return []
    series = context.series(first - timedelta(days=expectation.HISTORY_DAYS))
    if candidates is None:
        candidates = [scope for scope in series.values if scope[0] in DIMENSIONS]
    # An entity's increase is at most its spend: one that spent less than the smallest share
    # listed cannot be listed, and needs no model.
    least = expectation.ROOT_CAUSE_MIN_SHARE * increase if increase is not None else 0.0
    changes = []
    for scope in candidates:
        actual = series.total(scope, first, last)
        if actual <= 0 or actual < least:
            continue
        expected = sum(context.expected(scope, first, last, before=first))
        if scope in ongoing:
            expected *= _recent_level_factor(scope, first, context)
        changes.append(expectation.EntityChange(scope[0], scope[1], expected, actual))
    if increase is None:
        increase = max((change.delta for change in changes), default=0.0)
    return expectation.rank_root_causes(changes, total_increase=increase)


def _recent_level_factor(scope: Scope, first: date, context: DetectionContext) -> float:
    since = first - timedelta(days=expectation.RECENT_LEVEL_DAYS)
    until = first - timedelta(days=1)
    return expectation.recent_level_factor(
        actual=context.series(since).between(scope, since, until),
        expected=context.expected(scope, since, until, before=first),
    )


def _announce(outcome: IncidentOutcome) -> None:
    for incident in outcome.opened:
        metrics.incidents_opened_total.labels(kind=incident.kind, severity=incident.severity).inc()
        incident_opened.send(sender=Incident, incident=incident)
    for incident in outcome.escalated:
        incident_escalated.send(sender=Incident, incident=incident)


# --- Lifecycle ----------------------------------------------------------------------------
# The same transitions as an anomaly's (conditional UPDATEs, so concurrent operators cannot
# both win); each one is applied to the incident's anomalies too.


class IncidentTransitionConflict(Conflict):
    """A lifecycle action that the incident's status does not allow (answered as 409)."""


def _closed_conflict(incident: Incident, action: str) -> IncidentTransitionConflict:
    return IncidentTransitionConflict(
        f"Cannot {action} an incident that is {incident.status}.",
        [{"field": "status", "reason": f"incident is {incident.status}"}],
    )


@transaction.atomic
def incident_acknowledge(*, incident: Incident, actor: str) -> Incident:
    """open → acknowledged; acknowledged stays as it is; resolved/dismissed → 409."""
    incidents_acknowledge(incidents=Incident.objects.filter(pk=incident.pk), actor=actor)
    incident.refresh_from_db()
    if incident.status in CLOSED_STATUSES:
        raise _closed_conflict(incident, "acknowledge")
    return incident


@transaction.atomic
def incident_resolve(
    *, incident: Incident, actor: str, resolution: str, notes: str = ""
) -> Incident:
    """open/acknowledged → resolved or dismissed; an already closed incident → 409."""
    result = incidents_resolve(
        incidents=Incident.objects.filter(pk=incident.pk),
        actor=actor,
        resolution=resolution,
        notes=notes,
    )
    incident.refresh_from_db()
    if not result["changed"]:
        raise _closed_conflict(incident, "resolve")
    return incident


@transaction.atomic
def incident_label(*, incident: Incident, actor: str, label: str) -> Incident:
    """Record (or overwrite) the feedback label, whatever the status.

    A NO label (false alarm) also keeps the same scope and kind quiet for the tenant's
    suppression period, unless the impact at least doubles.
    """
    incidents_label(incidents=Incident.objects.filter(pk=incident.pk), actor=actor, label=label)
    incident.refresh_from_db()
    return incident


@transaction.atomic
def incidents_acknowledge(*, incidents, actor: str) -> dict:
    """Bulk acknowledge: {acknowledged, unchanged, conflicts} (closed ones are conflicts)."""
    ids = list(incidents.values_list("pk", flat=True))
    opened = list(
        Incident.objects.select_for_update()
        .filter(pk__in=ids, status=AnomalyStatus.OPEN)
        .values_list("pk", flat=True)
    )
    acknowledged = Incident.objects.filter(pk__in=opened, status=AnomalyStatus.OPEN).update(
        status=AnomalyStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor
    )
    conflicts = Incident.objects.filter(pk__in=ids, status__in=CLOSED_STATUSES).count()
    # Only the anomalies of incidents this call acknowledged follow them.
    anomalies_acknowledge(anomalies=Anomaly.objects.filter(incident_id__in=opened), actor=actor)
    return {
        "acknowledged": acknowledged,
        "unchanged": len(ids) - acknowledged - conflicts,
        "conflicts": conflicts,
    }


@transaction.atomic
def incidents_resolve(*, incidents, actor: str, resolution: str, notes: str = "") -> dict:
    """Bulk resolve or dismiss the open/acknowledged ones: {changed, conflicts}."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    ids = list(
        incidents.filter(status__in=OPEN_STATUSES).select_for_update().values_list("pk", flat=True)
    )
    total = incidents.count()
    changed = Incident.objects.filter(pk__in=ids, status__in=OPEN_STATUSES).update(
        status=resolution, resolved_at=timezone.now(), resolved_by=actor, resolution_notes=notes
    )
    anomalies_resolve(
        anomalies=Anomaly.objects.filter(incident_id__in=ids),
        actor=actor,
        resolution=resolution,
        notes=notes,
    )
    closed = list(Incident.objects.filter(pk__in=ids))
    for incident in closed:
        incident_changed.send(sender=Incident, incident=incident, event="resolved")
    transaction.on_commit(
        lambda: [incident_resolved.send(sender=Incident, incident=i) for i in closed]
    )
    return {"changed": changed, "conflicts": total - changed}


@transaction.atomic
def incidents_label(*, incidents, actor: str, label: str) -> dict:
    """Bulk feedback label: {labelled}."""
    if label not in FeedbackLabel.values:
        raise ValueError(f"label must be one of {', '.join(FeedbackLabel.values)}")
    ids = list(incidents.values_list("pk", flat=True))
    labelled = Incident.objects.filter(pk__in=ids).update(
        feedback_label=label, feedback_at=timezone.now(), feedback_by=actor
    )
    anomalies_label(anomalies=Anomaly.objects.filter(incident_id__in=ids), actor=actor, label=label)
    return {"labelled": labelled}
