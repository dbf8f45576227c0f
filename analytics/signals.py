"""Signals other apps may listen to. Workflows do not hang off them inside analytics."""

from django.dispatch import Signal

# Sent after the detecting transaction commits, for every HIGH or CRITICAL anomaly that a
# detection or snapshot evaluation created or updated.
# Arguments: sender=Anomaly, anomaly=<Anomaly>, created=<bool>.
high_anomaly_detected = Signal()
