from rest_framework import exceptions
from rest_framework.pagination import CursorPagination

MAX_PAGE_SIZE = 200


class CursorPage(CursorPagination):
    """`{next, previous, results}` cursor pages; each view sets `ordering` ending in `id`."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    ordering = ("-id",)

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if not 1 <= value <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [f"must be an integer between 1 and {self.max_page_size}"]}
            )
        return value

    def get_ordering(self, request, queryset, view):
        return getattr(view, "ordering", None) or self.ordering
