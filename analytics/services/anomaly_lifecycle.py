"""The anomaly lifecycle: acknowledge, resolve or dismiss, and the operator's feedback label.

Open goes to acknowledged, and open or acknowledged goes to resolved or dismissed; a closed
anomaly cannot move again. Each transition is a conditional UPDATE, so two operators acting
at once cannot both win.
"""

from django.db import transaction
from django.utils import timezone

from analytics.errors import Conflict
from analytics.models import Anomaly, AnomalyStatus, FeedbackLabel


class AnomalyTransitionConflict(Conflict):
    """A lifecycle action that the anomaly's status does not allow (answered as 409)."""


CLOSED_STATUSES = (AnomalyStatus.RESOLVED, AnomalyStatus.DISMISSED)
OPEN_STATUSES = (AnomalyStatus.OPEN, AnomalyStatus.ACKNOWLEDGED)
RESOLUTIONS = (AnomalyStatus.RESOLVED, AnomalyStatus.DISMISSED)


def _closed_conflict(anomaly: Anomaly, action: str) -> AnomalyTransitionConflict:
    return AnomalyTransitionConflict(
        f"Cannot {action} an anomaly that is {anomaly.status}.",
        [{"field": "status", "reason": f"anomaly is {anomaly.status}"}],
    )


@transaction.atomic
def anomaly_acknowledge(*, anomaly: Anomaly, actor: str) -> Anomaly:
    """open → acknowledged; acknowledged stays as it is; resolved/dismissed → 409."""
    # The status condition in the UPDATE makes concurrent actions race safely: whichever
    # commits first wins and the other sees the row count it deserves.
    Anomaly.objects.filter(pk=anomaly.pk, status=AnomalyStatus.OPEN).update(
        status=AnomalyStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor
    )
    anomaly.refresh_from_db()
    if anomaly.status in CLOSED_STATUSES:
        raise _closed_conflict(anomaly, "acknowledge")
    return anomaly


@transaction.atomic
def anomaly_resolve(*, anomaly: Anomaly, actor: str, resolution: str, notes: str = "") -> Anomaly:
    """open/acknowledged → resolved or dismissed; an already closed anomaly → 409."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    changed = Anomaly.objects.filter(pk=anomaly.pk, status__in=OPEN_STATUSES).update(
        status=resolution, resolved_at=timezone.now(), resolved_by=actor, resolution_notes=notes
    )
    anomaly.refresh_from_db()
    if not changed:
        raise _closed_conflict(anomaly, "resolve")
    return anomaly


@transaction.atomic
def anomaly_label(*, anomaly: Anomaly, actor: str, label: str) -> Anomaly:
    """Record (or overwrite) the feedback label, whatever the status."""
    if label not in FeedbackLabel.values:
        raise ValueError(f"label must be one of {', '.join(FeedbackLabel.values)}")
    Anomaly.objects.filter(pk=anomaly.pk).update(
        feedback_label=label, feedback_at=timezone.now(), feedback_by=actor
    )
    anomaly.refresh_from_db()
    return anomaly


@transaction.atomic
def anomalies_acknowledge(*, anomalies, actor: str) -> dict:
    """Bulk acknowledge: {acknowledged, unchanged, conflicts} (closed ones are conflicts)."""
    total = anomalies.count()
    acknowledged = anomalies.filter(status=AnomalyStatus.OPEN).update(
        status=AnomalyStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor
    )
    conflicts = anomalies.filter(status__in=CLOSED_STATUSES).count()
    return {
        "acknowledged": acknowledged,
        "unchanged": total - acknowledged - conflicts,
        "conflicts": conflicts,
    }


@transaction.atomic
def anomalies_resolve(*, anomalies, actor: str, resolution: str, notes: str = "") -> dict:
    """Bulk resolve or dismiss the open/acknowledged ones: {changed, conflicts}."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    total = anomalies.count()
    changed = anomalies.filter(status__in=OPEN_STATUSES).update(
        status=resolution, resolved_at=timezone.now(), resolved_by=actor, resolution_notes=notes
    )
    return {"changed": changed, "conflicts": total - changed}


@transaction.atomic
def anomalies_label(*, anomalies, actor: str, label: str) -> dict:
    """Bulk feedback label: {labelled}."""
    if label not in FeedbackLabel.values:
        raise ValueError(f"label must be one of {', '.join(FeedbackLabel.values)}")
    labelled = anomalies.update(feedback_label=label, feedback_at=timezone.now(), feedback_by=actor)
    return {"labelled": labelled}
