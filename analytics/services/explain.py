"""Why an anomaly happened: derived cause and contributors, from the rows of
`selectors/explain.py`.

Pure: the reads are the selector's, this module only turns their rows into explanations.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from analytics.services.detection import WindowStats, contributor_share, derive_cause

DIMENSIONS = ("model", "feature", "user")
# The dimension an entity (or a budget scope) already is: its contributors skip it.
OWN_DIMENSION = {"tenant": None, "user": "user", "feature": "feature", "model": "model"}
TOP_N = 3


@dataclass(frozen=True)
class CauseWindows:
    """A current window and the previous window of equal nominal length right before it."""

    previous_start: datetime
    current_start: datetime
    current_end: datetime


@dataclass(frozen=True)
class ExplainSubject:
    """What to explain: a scope (entity or budget scope) and the windows its explanation compares.

    `cause` is None for budget anomalies, whose derived cause is always UNKNOWN.
    """

    entity_type: str  # tenant, user, feature or model (a budget's budget_type)
    entity_id: str | None
    window_start: datetime
    window_end: datetime
    cause: CauseWindows | None = None


@dataclass
class Explanation:
    derived_cause: str = "UNKNOWN"
    contributors: list[dict] = field(default_factory=list)


def explanations_from_rows(
    *,
    subjects: Sequence[ExplainSubject],
    contributor_rows: Iterable[tuple],
    cause_rows: Iterable[tuple],
) -> list[Explanation]:
    """Derived cause and contributors for each subject, in the order given.

    The rows are those of `explain_contributor_rows` and `explain_cause_rows` for the same
    subjects; a subject without rows keeps the UNKNOWN cause and no contributors.
    """
    explanations = [Explanation() for _ in subjects]
    for idx, dimension, key, cents, total in contributor_rows:
        if dimension == OWN_DIMENSION[subjects[idx].entity_type]:
            continue
        explanations[idx].contributors.append(
            {
                "dimension": dimension,
                "key": key,
                "cents": cents,
                "share": contributor_share(cents, total),
            }
        )
    for idx, req_c, req_p, ret_c, ret_p, avg_c, avg_p, tagged, top in cause_rows:
        explanations[idx].derived_cause = derive_cause(
            current=WindowStats(req_c, ret_c, avg_c, tagged, top),
            previous=WindowStats(req_p, ret_p, avg_p),
            is_tenant=subjects[idx].entity_type == "tenant",
        )
    return explanations
