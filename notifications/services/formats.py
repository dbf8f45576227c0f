"""Pure rendering of one delivery's payload into a webhook, a Slack message or an email.

The payload is `{"type", "timestamp", "data"}`; `data` holds the incident or budget as the
API shows it, `admin_url`, and for digests `events` (a list of payloads). No ORM here.
"""

from typing import Any

from django.utils.html import escape

FORMAT_VERSION = "1"

TITLES = {
    "incident.opened": "Incident opened",
    "incident.escalated": "Incident escalated",
    "incident.resolved": "Incident resolved",
    "budget.threshold": "Budget threshold crossed",
    "costsim.breaker": "CostSim breaker",
    "digest": "Daily digest",
    "test": "Test notification",
}


def dollars(cents: Any) -> str:
    """`12345.6` cents as `$123.46`; None as `n/a`."""
    if cents is None:
        return "n/a"
    return f"${float(cents) / 100:,.2f}"


def _incident_lines(title: str, data: dict) -> tuple[str, list[str]]:
    incident = data.get("incident") or {}
    title = f"{title}: {incident.get('title', '')} ({incident.get('severity', '')})"
    lines = [
        f"Expected {dollars(incident.get('expected_cents'))}, "
        f"actual {dollars(incident.get('actual_cents'))} "
        f"({dollars(incident.get('impact_cents'))} over)"
    ]
    for cause in (incident.get("root_causes") or [])[:3]:
        share = cause.get("share")
        share_text = f" ({share * 100:.0f} %)" if isinstance(share, int | float) else ""
        lines.append(f"Root cause: {cause.get('entity_type')} {cause.get('entity_id')}{share_text}")
    return title, lines


def _budget_lines(title: str, data: dict) -> tuple[str, list[str]]:
    budget = data.get("budget") or {}
    title = f"{title}: {data.get('threshold_pct')} % of the {data.get('period')} budget"
    line = (
        f"Spent {dollars(data.get('spend_cents'))} of {dollars(data.get('limit_cents'))} "
        f"({data.get('usage_pct', 0):.1f} %) on {budget.get('budget_type')} budget "
        f"#{budget.get('id')}"
    )
    return title, [line]


def _breaker_lines(title: str, data: dict) -> tuple[str, list[str]]:
    lines = []
    if data.get("reason"):
        lines.append(f"Reason: {data['reason']}")
    if data.get("drift_score") is not None:
        lines.append(f"Drift score: {data['drift_score']:.4f}")
    if data.get("by"):
        lines.append(f"By: {data['by']}")
    return f"CostSim V2 breaker {data.get('event')}", lines


def _digest_lines(title: str, data: dict) -> tuple[str, list[str]]:
    events = data.get("events") or []
    title = f"{title}: {len(events)} event(s) on {data.get('day')}"
    return title, [summary_lines(event)[0] for event in events]


def _test_lines(title: str, data: dict) -> tuple[str, list[str]]:
    return title, [data.get("message", "If you can read this, the channel works.")]


# The (headline, lines) of each event type, from its title and the payload's data; every
# `incident.*` type reads as an incident, and a type not listed is shown by its title alone.
SUMMARIES = {
    "incident.*": _incident_lines,
    "budget.threshold": _budget_lines,
    "costsim.breaker": _breaker_lines,
    "digest": _digest_lines,
    "test": _test_lines,
}


def summary_lines(payload: dict) -> tuple[str, list[str]]:
    """(headline, detail lines) of one event, shared by Slack and email."""
    kind = payload.get("type", "")
    data = payload.get("data") or {}
    title, lines = TITLES.get(kind, kind), []
    summarise = SUMMARIES.get("incident.*" if kind.startswith("incident.") else kind)
    if summarise is not None:
        title, lines = summarise(title, data)
    if data.get("admin_url"):
        lines.append(f"Details: {data['admin_url']}")
    return title, lines


def slack_message(payload: dict) -> dict:
    """A Slack incoming-webhook body: `text` (the notification) plus Block Kit `blocks`."""
    title, lines = summary_lines(payload)
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
    ]
    if lines:
        body = "\n".join(lines)[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body}})
    admin_url = (payload.get("data") or {}).get("admin_url")
    if admin_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in costwise"},
                        "url": admin_url,
                    }
                ],
            }
        )
    return {"text": title, "blocks": blocks}


def email_message(payload: dict) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one payload."""
    title, lines = summary_lines(payload)
    subject = f"[costwise] {title}"[:200]
    text = "\n".join([title, "", *lines]) + "\n"
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    html = f"<html><body><h2>{escape(title)}</h2><ul>{items}</ul></body></html>"
    return subject, text, html
