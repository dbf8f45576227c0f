"""How the console shows things: money in dollars, JSON as tables, drill-down links.

Money is stored in cents (the API keeps them); people read dollars. `money` picks the
precision from the size of the amount, so a record of a fraction of a cent is not shown as
`$0.00` and a month's spend is not shown to the microdollar.
"""

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from analytics.money import dollars

MAX_DECIMALS = 6  # a cost record holds micro-cents: $0.000001 is the smallest non-zero step
JSON_DEPTH = 4  # nested deeper than this, a value is shown as compact JSON


def money(cents: float | Decimal | int | None) -> str:
    """Cents as dollars for people: two decimals from a dollar up, three significant digits
    below it (up to six decimals). 4210 -> `$42.10`, 1.234 -> `$0.0123`, 0.0005 -> `$0.000005`,
    None -> `—`."""
    if cents is None:
        return "—"
    amount = Decimal(str(cents))
    if not amount.is_finite():
        return "—"
    dollars_amount = abs(amount) / 100
    if dollars_amount >= 1 or dollars_amount == 0:
        return dollars(amount)
    exponent = dollars_amount.adjusted()  # floor(log10) of a non-zero Decimal
    places = min(max(2, 2 - exponent), MAX_DECIMALS)
    shown = dollars_amount.quantize(Decimal(1).scaleb(-places))
    if shown == 0:
        return dollars(amount)
    text = format(shown, "f").rstrip("0")
    if len(text.split(".")[1]) < 2:
        text = f"{shown:.2f}"
    return f"{'-' if amount < 0 else ''}${text}"


def money_column(field_name: str, description: str | None = None):
    """A changelist column showing a cents field in dollars, sortable by the field."""

    @admin.display(
        description=description or field_name.removesuffix("_cents"), ordering=field_name
    )
    def column(self, obj):
        return money(getattr(obj, field_name))

    column.__name__ = f"{field_name}_dollars"
    return column


def percent(value: float | None, *, signed: bool = True) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


# --- JSON as a table ------------------------------------------------------------------------


def _scalar(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def json_table(value, *, depth: int = 0):
    """A JSON value as nested HTML: an object as a two-column table, a list of objects as a
    table with a column per key, a list of plain values as a comma-separated line."""
    if not isinstance(value, dict | list):
        return _scalar(value)
    if not value:
        return "—"
    if depth >= JSON_DEPTH:
        return format_html("<code>{}</code>", _compact(value))
    if isinstance(value, dict):
        return _object_table(value, depth)
    return _list_html(value, depth)


def _list_html(value: list, depth: int):
    """A non-empty list: a table of objects, a line of plain values, else a block per item."""
    if all(isinstance(item, dict) for item in value):
        return _objects_table(value, depth)
    if all(not isinstance(item, dict | list) for item in value):
        return ", ".join(_scalar(item) for item in value)
    return format_html_join(
        "", "<div>{}</div>", ((json_table(item, depth=depth + 1),) for item in value)
    )


def _object_table(value: dict, depth: int):
    """An object as a two-column table: a row per key."""
    rows = format_html_join(
        "",
        '<tr><th scope="row">{}</th><td>{}</td></tr>',
        ((key, _cell(key, item, depth + 1)) for key, item in value.items()),
    )
    return format_html('<table class="json-table"><tbody>{}</tbody></table>', rows)


def _objects_table(value: list[dict], depth: int):
    """A list of objects as a table: a column per key of any of them, a row per object."""
    columns = list(dict.fromkeys(key for item in value for key in item))
    head = format_html_join("", "<th>{}</th>", ((column,) for column in columns))
    body = format_html_join(
        "",
        "<tr>{}</tr>",
        (
            (
                format_html_join(
                    "",
                    "<td>{}</td>",
                    ((_cell(column, item.get(column), depth + 1),) for column in columns),
                ),
            )
            for item in value
        ),
    )
    return format_html(
        '<table class="json-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        head,
        body,
    )


def _cell(key, value, depth: int):
    """A value under `key`; an amount under a `*_cents` key is shown in dollars."""
    if (
        isinstance(key, str)
        and key.endswith("_cents")
        and isinstance(value, int | float)
        and not isinstance(value, bool)
    ):
        return money(value)
    return json_table(value, depth=depth)


def _compact(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


# --- Drill-down links -----------------------------------------------------------------------

SCOPE_PARAMETERS = {"user": "user", "feature": "feature", "model": "model"}


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[first 00:00 UTC, the day after last 00:00 UTC)."""
    return (
        datetime.combine(first, time.min, tzinfo=UTC),
        datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )


def _window_query(tenant_id: int, start: datetime, end: datetime) -> dict:
    return {
        "tenant__id__exact": tenant_id,
        "created_at__gte": start.isoformat(),
        "created_at__lt": end.isoformat(),
    }


def cost_records_url(
    *,
    tenant_id: int,
    start: datetime,
    end: datetime,
    entity_type: str | None = None,
    entity_id: str | None = None,
) -> str:
    """The cost record list of a tenant over [start, end), narrowed to one user, feature or
    model when given (a tenant scope or None lists them all)."""
    query = _window_query(tenant_id, start, end)
    if entity_type in SCOPE_PARAMETERS and entity_id is not None:
        query[SCOPE_PARAMETERS[entity_type]] = entity_id
    return f"{reverse('admin:analytics_costrecord_changelist')}?{urlencode(query)}"


def runs_url(*, tenant_id: int, start: datetime, end: datetime) -> str:
    """The run list of a tenant over [start, end)."""
    query = _window_query(tenant_id, start, end)
    return f"{reverse('admin:analytics_runrecord_changelist')}?{urlencode(query)}"
