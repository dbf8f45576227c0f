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


def summary_lines(payload: dict) -> tuple[str, list[str]]:
    """(headline, detail lines) of one event, shared by Slack and email."""
    kind = payload.get("type", "")
    data = payload.get("data") or {}
    title = TITLES.get(kind, kind)
    lines: list[str] = []
    if kind.startswith("incident."):
        incident = data.get("incident") or {}
        title = f"{title}: {incident.get('title', '')} ({incident.get('severity', '')})"
        lines.append(
            f"Expected {dollars(incident.get('expected_cents'))}, "
            f"actual {dollars(incident.get('actual_cents'))} "
            f"({dollars(incident.get('impact_cents'))} over)"
        )
        causes = incident.get("root_causes") or []
        for cause in causes[:3]:
            share = cause.get("share")
            share_text = f" ({share * 100:.0f} %)" if isinstance(share, int | float) else ""
            lines.append(
                f"Root cause: {cause.get('entity_type')} {cause.get('entity_id')}{share_text}"
            )
    elif kind == "budget.threshold":
        budget = data.get("budget") or {}
        title = f"{title}: {data.get('threshold_pct')} % of the {data.get('period')} budget"
        lines.append(
            f"Spent {dollars(data.get('spend_cents'))} of {dollars(data.get('limit_cents'))} "
            f"({data.get('usage_pct', 0):.1f} %) on {budget.get('budget_type')} budget "
            f"#{budget.get('id')}"
        )
    elif kind == "costsim.breaker":
        title = f"CostSim V2 breaker {data.get('event')}"
        if data.get("reason"):
            lines.append(f"Reason: {data['reason']}")
        if data.get("drift_score") is not None:
            lines.append(f"Drift score: {data['drift_score']:.4f}")
        if data.get("by"):
            lines.append(f"By: {data['by']}")
    elif kind == "digest":
        events = data.get("events") or []
        title = f"{title}: {len(events)} event(s) on {data.get('day')}"
        lines += [summary_lines(event)[0] for event in events]
    elif kind == "test":
        lines.append(data.get("message", "If you can read this, the channel works."))
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
