"""Faceted lists: a page of rows plus counts over the whole filtered list.

The selector side is `analytics.selectors.facets.facet_counts`; this is the API side, shared
by the feedback and prediction lists.
"""

from rest_framework import serializers


def choice_counts_serializer(name: str, values) -> type[serializers.Serializer]:
    """A serializer of `{value: count}` with one integer per choice value, in choice order.

    `name` is the OpenAPI component name, so the schema keeps one typed object per facet.
    """
    fields = {value: serializers.IntegerField() for value in values}
    return type(f"{name}Serializer", (serializers.Serializer,), fields)


def faceted_page(view, rows, counts: dict, facets: tuple[str, ...]) -> dict:
    """One page of `rows` with the filtered list's `total` and the named facet counts."""
    page = view.paginate_queryset(rows)  # before page_links(): the paginator sets them here
    return {
        **view.paginator.page_links(),
        "results": page,
        "total": counts["total"],
        **{facet: counts[facet] for facet in facets},
    }
