"""Write incident events to the outbox inside the transaction that changed the incident."""

from django.dispatch import receiver

from analytics.models import Incident
from analytics.signals import incident_changed


@receiver(incident_changed, sender=Incident, dispatch_uid="notifications.incident_changed")
def _incident_changed(sender, incident: Incident, event: str, **kwargs) -> None:
    from notifications.services.events import incident_event_record

    incident_event_record(incident=incident, event=event)
