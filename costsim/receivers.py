"""Mark a breaker incident's alert sent when the notifications outbox delivers it to
Alertmanager; runs inside the dispatcher's transaction."""

from django.dispatch import receiver
from django.utils import timezone

from costsim.models import BreakerIncident
from notifications.models import ChannelKind, Delivery
from notifications.signals import deliveries_sent


@receiver(deliveries_sent, sender=Delivery, dispatch_uid="costsim.alerts_sent")
def _alerts_sent(sender, deliveries: list[Delivery], **kwargs) -> None:
    incident_ids = {
        delivery.payload["data"].get("incident_id")
        for delivery in deliveries
        if delivery.channel.kind == ChannelKind.ALERTMANAGER
    } - {None}
    if incident_ids:
        BreakerIncident.objects.filter(pk__in=incident_ids, alert_sent=False).update(
            alert_sent=True, alert_sent_at=timezone.now()
        )
