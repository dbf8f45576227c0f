"""Outbox gauges computed from the database when /metrics is scraped.

The web workers and the Celery worker would each hold their own in-process gauge; a count
read at scrape time is right whichever process wrote the rows.
"""

from collections.abc import Iterator

from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from notifications.models import ChannelKind, Delivery, DeliveryStatus


class OutboxCollector:
    """Pending deliveries (all, and due now) and the age of the oldest, per channel kind."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        pending = Q(status=DeliveryStatus.PENDING)
        rows = {
            row["channel__kind"]: row
            for row in Delivery.objects.filter(pending)
            .values("channel__kind")
            .annotate(
                depth=Count("id"),
                due=Count("id", filter=Q(next_attempt_at__lte=now)),
                oldest=Min("event_at"),
            )
        }
        depth = GaugeMetricFamily(
            "notifications_delivery_queue_depth",
            "Deliveries waiting to be sent (pending), by channel kind",
            labels=["kind"],
        )
        due = GaugeMetricFamily(
            "notifications_delivery_queue_due",
            "Pending deliveries whose next attempt is due now, by channel kind",
            labels=["kind"],
        )
        age = GaugeMetricFamily(
            "notifications_delivery_oldest_pending_seconds",
            "Age of the oldest pending delivery's event, by channel kind (0 when none)",
            labels=["kind"],
        )
        for kind in ChannelKind.values:
            row = rows.get(kind)
            depth.add_metric([kind], row["depth"] if row else 0)
            due.add_metric([kind], row["due"] if row else 0)
            age.add_metric([kind], (now - row["oldest"]).total_seconds() if row else 0)
        yield depth
        yield due
        yield age


# One instance per process, so registering it again (a second ready()) changes nothing.
OUTBOX_COLLECTOR = OutboxCollector()
