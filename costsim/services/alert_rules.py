"""The shipped Prometheus alert rules.

`costsim/alert_rules.yaml` is the one source: the API serves its bytes and
`write_alert_rules` copies them, so what operators load is what the tests validated.
"""

import re
from functools import cache
from pathlib import Path

import yaml

RULES_FILE = Path(__file__).resolve().parent.parent / "alert_rules.yaml"
CONTENT_TYPE = "application/yaml"

_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without)\s*\([^)]*\)")
# An identifier not followed by "(" is a metric name once matchers, ranges and grouping
# labels are gone; function names are always followed by "(".
_NAME = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


@cache
def alert_rules_bytes() -> bytes:
    """Return the rule file exactly as shipped."""
    return RULES_FILE.read_bytes()


def alert_rules_write(*, path: Path) -> int:
    """Write the rule file byte for byte to `path`; return the number of rules."""
    path.write_bytes(alert_rules_bytes())
    return len(alert_rules())


def alert_rules() -> list[dict]:
    """Return every rule of every group, parsed."""
    document = yaml.safe_load(alert_rules_bytes())
    return [rule for group in document["groups"] for rule in group["rules"]]


def alert_rule_metrics() -> set[str]:
    """Return the names of the series the rule expressions read (e.g. `..._bucket`)."""
    names = set()
    for rule in alert_rules():
        expr = _GROUPING.sub("", _RANGES.sub("", _LABEL_MATCHERS.sub("", rule["expr"])))
        names.update(name for name in _NAME.findall(expr) if name not in _KEYWORDS)
    return names
