"""Signals other apps may listen to. Workflows do not hang off them inside analytics."""

from django.dispatch import Signal

# Sent after the detecting transaction commits, for every HIGH or CRITICAL anomaly that a
# detection or snapshot evaluation created or updated.
# Arguments: sender=Anomaly, anomaly=<Anomaly>, created=<bool>.
high_anomaly_detected = Signal()

# Incidents, sent after the detecting (or operating) transaction commits.
# Arguments: sender=Incident, incident=<Incident>.
incident_opened = Signal()  # a new incident
incident_escalated = Signal()  # an incident's severity went up
incident_resolved = Signal()  # an operator resolved or dismissed it

# Sent inside the transaction that opened, escalated or resolved an incident, so a listener
# can write rows (an outbox) that commit or roll back with the change. A listener that
# raises rolls the change back: keep it to writes in the same database.
# Arguments: sender=Incident, incident=<Incident>, event="opened" | "escalated" | "resolved".
incident_changed = Signal()
