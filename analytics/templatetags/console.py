"""Template filters of the operator console: `{{ cents|money }}`, `{{ value|json_table }}`."""

from django import template

from analytics.admin import display

register = template.Library()


@register.filter
def money(cents) -> str:
    """Cents as dollars with a precision that suits the amount (see display.money)."""
    return display.money(cents)


@register.filter
def json_table(value):
    """A JSON value (dict or list) as a readable HTML table."""
    return display.json_table(value)
