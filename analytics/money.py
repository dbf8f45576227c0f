"""Money is kept in cents as Decimal (numeric(18,6)); these helpers render it exactly."""

from decimal import ROUND_HALF_UP, Decimal


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


def dollars(cents: float | Decimal | int | None) -> str:
    """Cents as dollars with two decimals: 4210 -> `$42.10`, -5 -> `-$0.05`, None -> `—`."""
    if cents is None:
        return "—"
    amount = Decimal(str(cents))
    if not amount.is_finite():
        return "—"
    amount = (amount / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"
