"""The one list envelope of the API and its cursor pagination.

Every list endpoint answers `{"next": url | null, "previous": url | null, "results": [...]}`.
Lists that also report facets or totals of the whole filtered list (`total`, `by_type`, ...)
add them as further top-level keys, rendered and documented by a `PageSerializer` subclass.
`page_size` (1..200, default 50) sets the length of a page; `next` and `previous` carry an
opaque `cursor`.

A page is a keyset read: the cursor holds the sort key of the row the page continues from
(every field of the view's `ordering`, which ends in `id`), so a page never skips or repeats
a row when rows are added meanwhile, and a deep page costs what the first one does. There is
no offset paging: `limit` and `offset` are answered with a 400 saying what to use instead,
so a client written for offsets fails loudly rather than reading the first page forever.
"""

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cmp_to_key
from typing import Any, NamedTuple

from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db.models import Q, QuerySet
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# A cursor of the longest sort key is well under this; the cap keeps decoding cheap.
MAX_CURSOR_CHARS = 1000
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1

PAGE_SIZE_REASON = f"must be an integer between 1 and {MAX_PAGE_SIZE}"
INVALID_CURSOR = "is not a valid cursor; use the `next` or `previous` link of a page"
# Offset paging is gone; a client still sending these learns what replaced them.
UNSUPPORTED_PARAMETERS = {
    "limit": "is not supported; use page_size",
    "offset": "is not supported; follow the `next` and `previous` links",
}

INTEGER_FIELDS = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
    }
)
TEXT_FIELDS = frozenset({"CharField", "TextField", "SlugField"})
_DIGITS = re.compile(r"[0-9]{1,4}")


class InvalidCursor(ValueError):
    pass


class Cursor(NamedTuple):
    """`position` is the sort key a page continues from (None: an end of the list).

    Forward (`reverse` False) the page holds the rows after `position`, from the start of
    the list when it is None; backward it holds the rows before `position`, the end of the
    list when it is None.
    """

    reverse: bool
    position: tuple | None


def reverse_ordering(ordering: Sequence[str]) -> tuple[str, ...]:
    return tuple(term[1:] if term.startswith("-") else f"-{term}" for term in ordering)


def beyond(ordering: Sequence[str], position: Sequence[Any]) -> Q:
    """Rows strictly after `position` in `ordering`.

    For ("-a", "b"): a < x, or a = x and b > y. The first field's bound alone (a <= x) is
    added so that PostgreSQL can range-scan an index on it.
    """
    names = [term.lstrip("-") for term in ordering]
    clause = None
    for index in reversed(range(len(ordering))):
        lookup = "lt" if ordering[index].startswith("-") else "gt"
        strictly = Q(**{f"{names[index]}__{lookup}": position[index]})
        clause = (
            strictly
            if clause is None
            else strictly | (Q(**{names[index]: position[index]}) & clause)
        )
    bound = "lte" if ordering[0].startswith("-") else "gte"
    return Q(**{f"{names[0]}__{bound}": position[0]}) & clause


def _storable_text(value: Any) -> bool:
    # PostgreSQL text refuses NUL, and an unpaired surrogate cannot be encoded at all.
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_bigint(value: Any) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and BIGINT_MIN <= value <= BIGINT_MAX
    )


# complexity: one branch per field type a cursor may order by, each with its own parse and rejection
def _field_value(field, raw: Any) -> Any:
    """`raw` (a JSON value from a cursor) as a value of the model field, or InvalidCursor."""
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        if not _storable_text(raw):
            raise InvalidCursor
        try:
            value = parse_datetime(raw)
            if value is None or value.tzinfo is None:
                raise InvalidCursor
            return value.astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidCursor from None
    if kind == "DateField":
        if not _storable_text(raw):
            raise InvalidCursor
        try:
            return date.fromisoformat(raw)
        except ValueError:
            raise InvalidCursor from None
    if kind in INTEGER_FIELDS:
        if not _is_bigint(raw):
            raise InvalidCursor
        return raw
    if kind in TEXT_FIELDS:
        if not _storable_text(raw):
            raise InvalidCursor
        return raw
    if kind == "UUIDField":
        if not _storable_text(raw):
            raise InvalidCursor
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise InvalidCursor from None
    raise ImproperlyConfigured(f"cursor pages cannot order by a {kind} ({field.name})")


def _plain_value(raw: Any) -> Any:
    """A position value of an in-memory list: an integer or a text."""
    if _is_bigint(raw) or _storable_text(raw):
        return raw
    raise InvalidCursor


def _json_value(value: Any) -> Any:
    """A sort-key value as the cursor stores it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None:
        raise ImproperlyConfigured("cursor pages cannot order by a field that may be null")
    return value


def _attribute(item: Any, name: str) -> Any:
    return item[name] if isinstance(item, dict) else getattr(item, name)


def _compare(ordering: Sequence[str], left: Sequence[Any], right: Sequence[Any]) -> int:
    """-1, 0 or 1: where sort key `left` stands against `right` in `ordering`."""
    for term, a, b in zip(ordering, left, right, strict=True):
        if a != b:
            less = a < b
            return (1 if less else -1) if term.startswith("-") else (-1 if less else 1)
    return 0


class CursorPage(BasePagination):
    """`{next, previous, results}` keyset pages; each list view sets `ordering` ending in `id`.

    Besides querysets, an in-memory list of dicts or objects pages the same way.
    """

    page_size = DEFAULT_PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    cursor_query_param = "cursor"
    ordering = ("-id",)

    # complexity: backward and forward pages set their next and previous cursors differently, with
    # the empty-page edges of each
    def paginate_queryset(self, queryset, request, view=None) -> list:
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.page_size, cursor = self.read_parameters(request, queryset)
        if isinstance(queryset, QuerySet):
            rows = self._read(queryset, cursor)
        else:
            rows = self._read_sequence(queryset, cursor)
        more = len(rows) > self.page_size
        page = rows[: self.page_size]
        self.next_cursor = self.previous_cursor = None
        self.first_page_next = False
        if cursor is not None and cursor.reverse:
            page.reverse()
            if more:
                self.previous_cursor = Cursor(True, self._position(page[0]))
            # Without a position this is the last page, and nothing follows it.
            if cursor.position is not None and page:
                self.next_cursor = Cursor(False, self._position(page[-1]))
            elif cursor.position is not None:
                # Nothing lies before the cursor's row, so the first page starts with it.
                self.first_page_next = True
        else:
            if more:
                self.next_cursor = Cursor(False, self._position(page[-1]))
            if cursor is not None and cursor.position is not None:
                # A page reached through a cursor has rows before it; an empty one (its rows
                # were deleted) steps back to the last page of the list.
                position = self._position(page[0]) if page else None
                self.previous_cursor = Cursor(True, position)
        return page

    def read_parameters(self, request, queryset) -> tuple[int, Cursor | None]:
        """`page_size` and the decoded cursor; a 400 naming every bad parameter."""
        errors: dict[str, list[str]] = {}
        for name, reason in UNSUPPORTED_PARAMETERS.items():
            if name in request.query_params:
                errors[name] = [reason]
        page_size = self.page_size
        raw = request.query_params.get(self.page_size_query_param)
        if raw is not None:
            value = int(raw) if _DIGITS.fullmatch(raw) else 0
            if 1 <= value <= self.max_page_size:
                page_size = value
            else:
                errors[self.page_size_query_param] = [PAGE_SIZE_REASON]
        cursor = None
        encoded = request.query_params.get(self.cursor_query_param)
        if encoded is not None:
            try:
                cursor = self.decode_cursor(encoded, queryset)
            except InvalidCursor:
                errors[self.cursor_query_param] = [INVALID_CURSOR]
        if errors:
            raise exceptions.ValidationError(errors)
        return page_size, cursor

    def get_ordering(self, request, queryset, view) -> tuple[str, ...]:
        ordering = tuple(getattr(view, "ordering", None) or self.ordering)
        if ordering[-1].lstrip("-") != "id":
            raise ImproperlyConfigured(f"{type(view).__name__}.ordering must end in id")
        return ordering

    # Reading a page -----------------------------------------------------------------------

    def _read(self, queryset: QuerySet, cursor: Cursor | None) -> list:
        ordering = self.ordering
        if cursor is not None and cursor.reverse:
            ordering = reverse_ordering(ordering)
        queryset = queryset.order_by(*ordering)
        if cursor is not None and cursor.position is not None:
            queryset = queryset.filter(beyond(ordering, cursor.position))
        return list(queryset[: self.page_size + 1])

    def _read_sequence(self, items: Sequence, cursor: Cursor | None) -> list:
        ordering = self.ordering
        if cursor is not None and cursor.reverse:
            ordering = reverse_ordering(ordering)
        keyed = [(self._key(item), item) for item in items]
        try:
            keyed.sort(key=cmp_to_key(lambda a, b: _compare(ordering, a[0], b[0])))
            if cursor is not None and cursor.position is not None:
                keyed = [pair for pair in keyed if _compare(ordering, pair[0], cursor.position) > 0]
        except TypeError:
            # A position of another type than the list's sort key.
            raise exceptions.ValidationError({self.cursor_query_param: [INVALID_CURSOR]}) from None
        return [item for _, item in keyed[: self.page_size + 1]]

    def _key(self, item) -> tuple:
        return tuple(_attribute(item, term.lstrip("-")) for term in self.ordering)

    def _position(self, item) -> tuple:
        return tuple(_json_value(value) for value in self._key(item))

    # Cursors ------------------------------------------------------------------------------

    def encode_cursor(self, cursor: Cursor) -> str:
        document = {"r": 1 if cursor.reverse else 0, "p": cursor.position}
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
        return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")

    # complexity: each check of a client-made cursor (size, base64, JSON shape, direction, one valid
    # value per ordering field) rejects on its own
    def decode_cursor(self, encoded: str, queryset) -> Cursor:
        """The cursor of a `next`/`previous` link; InvalidCursor for anything else.

        A client-made cursor is checked like any input: its position must have one value
        per ordering field, each a valid value of that field.
        """
        if not encoded or len(encoded) > MAX_CURSOR_CHARS:
            raise InvalidCursor
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            text = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
            document = json.loads(text.decode("utf-8"))
        except (ValueError, binascii.Error, UnicodeError, RecursionError):
            raise InvalidCursor from None
        if not isinstance(document, dict) or set(document) != {"r", "p"}:
            raise InvalidCursor
        reverse, raw = document["r"], document["p"]
        if reverse not in (0, 1) or isinstance(reverse, bool | float):
            raise InvalidCursor
        if raw is None:
            return Cursor(bool(reverse), None)
        if not isinstance(raw, list) or len(raw) != len(self.ordering):
            raise InvalidCursor
        if isinstance(queryset, QuerySet):
            position = tuple(
                _field_value(self._model_field(queryset.model, term), value)
                for term, value in zip(self.ordering, raw, strict=True)
            )
        else:
            position = tuple(_plain_value(value) for value in raw)
        return Cursor(bool(reverse), position)

    @staticmethod
    def _model_field(model, term: str):
        name = term.lstrip("-")
        try:
            return model._meta.pk if name == "pk" else model._meta.get_field(name)
        except FieldDoesNotExist:
            raise ImproperlyConfigured(f"{model.__name__} has no field {name}") from None

    def _link(self, cursor: Cursor | None) -> str | None:
        if cursor is None:
            return None
        return replace_query_param(
            self.base_url, self.cursor_query_param, self.encode_cursor(cursor)
        )

    def get_next_link(self) -> str | None:
        if self.first_page_next:
            return remove_query_param(self.base_url, self.cursor_query_param)
        return self._link(self.next_cursor)

    def get_previous_link(self) -> str | None:
        return self._link(self.previous_cursor)

    # Responses and schema -----------------------------------------------------------------

    def page_links(self) -> dict[str, str | None]:
        return {"next": self.get_next_link(), "previous": self.get_previous_link()}

    def get_paginated_response(self, data) -> Response:
        return Response({**self.page_links(), "results": data})

    def get_paginated_response_schema(self, schema: dict) -> dict:
        link = {"type": "string", "format": "uri", "nullable": True}
        return {
            "type": "object",
            "required": ["next", "previous", "results"],
            "properties": {"next": link, "previous": link, "results": schema},
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position from the `next` or `previous` link of a page.",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": "Results per page.",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": self.max_page_size,
                    "default": self.page_size,
                },
            },
        ]


@extend_schema_serializer(many=False)
class PageSerializer(serializers.Serializer):
    """The envelope of a list with extra top-level keys (facets, totals).

    Subclasses declare `results` and the extras; the view renders
    `{**paginator.page_links(), "results": page, **extras}` through the subclass, so the
    OpenAPI document describes exactly what is sent.
    """

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
