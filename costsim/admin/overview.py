"""CostSim on the console's overview: the breaker's state and the last canary's verdict."""

from django.urls import reverse
from django.utils.text import Truncator

from analytics.admin.overview import Panel, PanelRow, register_overview_panel
from costsim.models import BREAKER_NAME, CanaryStatus, CircuitBreaker
from costsim.selectors import canary_report_list
from costsim.services.breaker import breaker_is_open

CANARY_TONES = {
    CanaryStatus.PASS: "ok",
    CanaryStatus.FAIL: "bad",
    CanaryStatus.ERROR: "bad",
    CanaryStatus.INSUFFICIENT_DATA: "warn",
    CanaryStatus.SKIPPED: "",
}


def breaker_rows() -> list[PanelRow]:
    breaker = CircuitBreaker.objects.filter(name=BREAKER_NAME).first()
    if breaker is None:
        return [PanelRow("V2 breaker", "not set up (run the migrations)", "warn")]
    url = reverse("admin:costsim_circuitbreaker_change", args=[breaker.pk])
    if not breaker.disabled:
        return [PanelRow("V2 breaker", "closed: V2 runs in shadow", "ok", url)]
    if not breaker_is_open(breaker):
        # Read-only: the page does not close the breaker, the next check does.
        return [PanelRow("V2 breaker", "open, TTL expired: closes on the next check", "warn", url)]
    rows = [PanelRow("V2 breaker", "OPEN: V2 disabled", "bad", url)]
    if breaker.disabled_reason:
        rows.append(PanelRow("Reason", Truncator(breaker.disabled_reason).chars(120)))
    if breaker.opened_at:
        rows.append(PanelRow("Opened", f"{breaker.opened_at:%Y-%m-%d %H:%M} UTC"))
    return rows


def canary_rows() -> list[PanelRow]:
    report = canary_report_list().first()
    if report is None:
        return [PanelRow("Last canary", "none yet (runs daily at 02:00 UTC)")]
    url = reverse("admin:costsim_canaryreport_change", args=[report.pk])
    verdict = report.get_status_display()
    if report.status == CanaryStatus.INSUFFICIENT_DATA and report.min_samples:
        verdict += f" ({report.evaluated_samples} of {report.min_samples} samples)"
    elif report.kl_divergence is not None:
        verdict += f" (KL {report.kl_divergence:.4f})"
    return [
        PanelRow("Last canary", verdict, CANARY_TONES.get(report.status, ""), url),
        PanelRow("Ran at", f"{report.timestamp:%Y-%m-%d %H:%M} UTC"),
    ]


@register_overview_panel
def costsim_panel(request) -> Panel:
    return Panel(
        id="costsim",
        title="CostSim",
        rows=breaker_rows() + canary_rows(),
        link_text="Breaker incidents",
        link_url=reverse("admin:costsim_breakerincident_changelist") + "?resolved__exact=0",
    )
