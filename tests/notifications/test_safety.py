"""The server-side request forgery guard and the pure formats, without the database."""

import pytest

from notifications.services.formats import dollars, email_message, slack_message
from notifications.services.safety import UnsafeUrl, url_check


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.8.9.10:8443/x",
        "https://10.0.0.1/",
        "https://172.16.5.4/",
        "https://192.168.0.1/",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/",
        "https://[fe80::1]/",
        "https://[fd00:ec2::254]/",
        "https://[::ffff:127.0.0.1]/",
        "https://0.0.0.0/",
        "https://100.64.0.1/",
        "https://localhost/",
        "http://93.184.215.14/",
        "ftp://93.184.215.14/",
        "https:///nohost",
    ],
)
def test_unsafe_urls_are_refused(url):
    with pytest.raises(UnsafeUrl):
        url_check(url, allow_private=False)


def test_public_https_address_is_allowed():
    url_check("https://93.184.215.14/hook", allow_private=False)


def test_allow_private_lifts_the_address_and_scheme_rules():
    url_check("http://127.0.0.1:8000/hook", allow_private=True)
    with pytest.raises(UnsafeUrl):
        url_check("file:///etc/passwd", allow_private=True)


INCIDENT = {
    "type": "incident.opened",
    "timestamp": "2026-03-11T06:00:00Z",
    "data": {
        "incident": {
            "title": "Outlier: tenant",
            "severity": "HIGH",
            "expected_cents": 1000000,
            "actual_cents": 3000000,
            "impact_cents": 2000000,
            "root_causes": [{"entity_type": "user", "entity_id": "u1", "share": 0.9}],
        },
        "admin_url": "http://127.0.0.1:8000/admin/analytics/incident/1/change/",
    },
}


def test_slack_message_has_text_blocks_and_dollars():
    message = slack_message(INCIDENT)
    assert message["text"].startswith("Incident opened: Outlier: tenant (HIGH)")
    assert [block["type"] for block in message["blocks"]] == ["header", "section", "actions"]
    section = message["blocks"][1]["text"]["text"]
    assert "Expected $10,000.00, actual $30,000.00 ($20,000.00 over)" in section
    assert "Root cause: user u1 (90 %)" in section


def test_email_has_plain_and_escaped_html():
    payload = {
        **INCIDENT,
        "data": {
            **INCIDENT["data"],
            "incident": {**INCIDENT["data"]["incident"], "title": "<script>"},
        },
    }
    subject, text, html = email_message(payload)
    assert subject.startswith("[costwise] Incident opened")
    assert "Expected $10,000.00" in text
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_dollars():
    assert dollars(12345.6) == "$123.46"
    assert dollars(None) == "n/a"
