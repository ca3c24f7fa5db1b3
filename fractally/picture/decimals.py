"""Coordinates of any precision: decimal text in, exact ``Decimal`` and canonical text out.

A deep view's centre, scale and Julia ``c`` need more digits than a float64 holds, so the spec
takes them as decimal strings of any length (JSON numbers are still read, as the shortest decimal
that gives back the same float64). ``canonical`` writes one text per value (no trailing zeros, no
``+``, positional from 1e-6 to below 1e21, else ``d.ddde-N``): the normalized spec, hence the job's
hash, is the same however the user spelled the number.

Parsing a ``Decimal`` from text is exact whatever the decimal context, and so are comparisons; no
arithmetic here rounds.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from fractally.errors import SpecError

#: Significant digits a coordinate may have: enough for a scale of 1e-1000 with room to spare.
MAX_DIGITS = 1_100
#: Characters a coordinate's text may have (digits, sign, point, exponent).
MAX_TEXT = MAX_DIGITS + 32
#: |exponent| bound for the text: keeps ``Decimal`` arithmetic on it small.
MAX_EXPONENT = 100_000

# ASCII digits only: without re.ASCII, \d would take "１" or "١" for a 1
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)


def parse_decimal(value: Any, field: str) -> Decimal:
    """A JSON number or decimal string as an exact ``Decimal``; a ``SpecError`` naming ``field`` if it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"{field} must be a number or a decimal string, got {_kind(value)}", field)
    if isinstance(value, int):
        if abs(value) > 10**30:
            raise SpecError(f"{field} is far too large", field)
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(f"{field} must be a finite number, got {value!r}", field)
        return Decimal(repr(value))  # the shortest decimal that reads back as this float64
    text = value.strip()
    if len(value) > MAX_TEXT:
        raise SpecError(f"{field} has {len(value)} characters; a coordinate may have at most {MAX_DIGITS} "
                        "significant digits", field)
    match = DECIMAL.fullmatch(text)
    if not match or (match.group(2) and len(match.group(2)) > 8):
        raise SpecError(f"{field} must be a decimal number such as \"-0.743643887037158704752191506114774\" "
                        f"or \"4e-17\", got {value[:40]!r}", field)
    number = Decimal(text)
    if len(significant_digits(number)) > MAX_DIGITS:
        raise SpecError(f"{field} has more than {MAX_DIGITS} significant digits", field)
    if not number.is_zero() and abs(number.adjusted()) > MAX_EXPONENT:
        raise SpecError(f"{field} is out of range: {value[:40]!r}", field)
    return number


def significant_digits(number: Decimal) -> str:
    """The digits of ``number`` without leading or trailing zeros ("" for zero)."""
    digits = "".join(map(str, number.as_tuple().digits)).strip("0")
    return digits


def canonical(number: Decimal) -> str:
    """The one text of a value: "-0.7436", "4e-17", "1.5e-300", "12", "0" (never "-0")."""
    if number.is_zero():
        return "0"
    sign, digits_t, exponent = number.as_tuple()
    digits = "".join(map(str, digits_t)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent = int(exponent) + len(digits) - len(stripped)
    digits = stripped
    adjusted = exponent + len(digits) - 1  # the power of ten of the first digit
    prefix = "-" if sign else ""
    if -6 <= adjusted < 21:
        if exponent >= 0:
            return prefix + digits + "0" * exponent
        if adjusted >= 0:
            return prefix + digits[:adjusted + 1] + "." + digits[adjusted + 1:]
        return prefix + "0." + "0" * (-adjusted - 1) + digits
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{prefix}{mantissa}e{adjusted}"


def to_float(number: Decimal) -> float:
    """The float64 nearest ``number`` (0.0 if it underflows, never -0.0)."""
    return float(number) + 0.0


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return repr(value)[:40]
