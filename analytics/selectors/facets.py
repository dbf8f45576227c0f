"""Facet counts of a filtered list: its total and a count per choice value, in one query.

The feedback and prediction lists answer with a page of rows plus counts over the whole
filtered list (`by_type`, `by_severity`, ...); every value of a choice is present, zero
when no row has it, so clients need not guess the keys.
"""

from collections.abc import Iterable

from django.db.models import Aggregate, Count, Q, QuerySet


def facet_counts(
    queryset: QuerySet,
    *,
    facets: dict[str, tuple[str, Iterable[str]]],
    extra: dict[str, Aggregate] | None = None,
) -> dict:
    """`total`, one `{value: count}` per facet and each `extra` aggregate, in one query.

    `facets` maps an answer key to the field it counts and that field's choice values, e.g.
    `{"by_type": ("pattern_type", PatternType.values)}`.
    """
    values = {name: list(choices) for name, (_, choices) in facets.items()}
    aggregates = {"total": Count("pk"), **(extra or {})}
    for name, (field, _) in facets.items():
        for value in values[name]:
            aggregates[f"{name}__{value}"] = Count("pk", filter=Q(**{field: value}))
    row = queryset.order_by().aggregate(**aggregates)
    counts = {key: row[key] for key in ("total", *(extra or {}))}
    for name in facets:
        counts[name] = {value: row[f"{name}__{value}"] for value in values[name]}
    return counts
