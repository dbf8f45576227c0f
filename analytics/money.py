"""Money is kept in cents as Decimal (numeric(18,6)); these helpers render it exactly."""

from decimal import Decimal


def plain_decimal(value: Decimal | int) -> str:
    """`12.500000` -> `12.5`, `3.000000` -> `3`, `0E-6` -> `0`; never exponent notation."""
    if isinstance(value, int):
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text
