"""State gauges computed from the database when /metrics is scraped.

Per-process gauges would disagree between the web workers and the Celery worker that changed
the state; reading the rows at scrape time is right whichever process wrote them. Reading
has no side effects: an open breaker past its TTL shows as closed here but is only closed by
the next `check`.
"""

from collections.abc import Iterator

from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from costsim.models import BREAKER_NAME, CanaryReport, CanaryStatus, CircuitBreaker
from costsim.services.breaker import breaker_is_open
from notifications.models import ChannelKind, Delivery, DeliveryStatus


class CostsimStateCollector:
    """Breaker state, failure streak, alert backlog, latest canary distances, versions."""

    def collect(self) -> Iterator[Metric]:
        breaker = CircuitBreaker.objects.filter(name=BREAKER_NAME).first()
        is_open = breaker is not None and breaker_is_open(breaker, now=timezone.now())
        yield GaugeMetricFamily(
            "costsim_v2_circuit_breaker_state",
            "1 while the V2 circuit breaker is open, else 0",
            value=1 if is_open else 0,
        )
        yield GaugeMetricFamily(
            "costsim_cb_consecutive_failures",
            "Consecutive drift failures counted by the breaker",
            value=breaker.consecutive_failures if breaker else 0,
        )
        yield GaugeMetricFamily(
            "costsim_cb_alert_queue_depth",
            "Breaker alerts waiting for delivery to Alertmanager",
            value=Delivery.objects.filter(
                channel__kind=ChannelKind.ALERTMANAGER, status=DeliveryStatus.PENDING
            ).count(),
        )

        latest = (
            CanaryReport.objects.filter(status__in=[CanaryStatus.PASS, CanaryStatus.FAIL])
            .order_by("-timestamp", "-id")
            .values("kl_divergence", "js_distance")
            .first()
        )
        # Absent, not 0, before the first canary: 0 would read as "no divergence".
        if latest is not None:
            yield GaugeMetricFamily(
                "costsim_v2_kl_divergence",
                "KL divergence of the latest canary report",
                value=latest["kl_divergence"],
            )
            yield GaugeMetricFamily(
                "costsim_v2_js_distance",
                "JS distance of the latest canary report",
                value=latest["js_distance"],
            )

        version = GaugeMetricFamily(
            "costsim_v2_version_info",
            "V2 model and adapter versions of this deployment",
            labels=["model_version", "adapter_version"],
        )
        version.add_metric([settings.COSTSIM_MODEL_VERSION, settings.COSTSIM_ADAPTER_VERSION], 1)
        yield version


# One instance per process, so registering it again (a second ready()) changes nothing.
STATE_COLLECTOR = CostsimStateCollector()
