"""Money is integer fen. This module is the only place that turns yuan into fen or back.

Rules, each written once and tested in tests/portal/kernel/test_money.py:

* ``round_to_fen``: a Decimal amount of yuan (kWh x price) becomes fen by ROUND_HALF_UP
  (四舍五入), the rule for every bill line. Lines are then summed as integers.
* ``round_late_fee``: a late fee's exact total in Decimal fen (the sum of its daily accruals)
  becomes whole fen once, ROUND_HALF_UP; never per day.
* ``parse_yuan``: a yuan string from a person or a channel (``"12.30"``) becomes fen strictly:
  digits, an optional point and at most two decimals, no sign, no exponent, no spaces.
* ``format_yuan``: fen become a display string (``"1,234.50"``) without touching a float.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

FEN_PER_YUAN = 100
BILL_LINE_ROUNDING = ROUND_HALF_UP
_YUAN_RE = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")


class MoneyFormatError(ValueError):
    """A yuan string that is not a plain non-negative amount with at most two decimals."""


def round_to_fen(yuan: Decimal) -> int:
    """Quantise a Decimal amount of yuan to whole fen, half up (四舍五入)."""
    if not isinstance(yuan, Decimal):
        raise TypeError(f"round_to_fen takes a Decimal, not {type(yuan).__name__}")
    if not yuan.is_finite():
        raise ValueError("amount must be finite")
    return int((yuan * FEN_PER_YUAN).quantize(Decimal(1), rounding=BILL_LINE_ROUNDING))


def parse_yuan(text: str) -> int:
    """Parse a strict yuan string (``"0.01"``, ``"12"``, ``"1234.5"``) into fen."""
    if not isinstance(text, str):
        raise MoneyFormatError("amount must be text")
    match = _YUAN_RE.fullmatch(text)
    if match is None:
        raise MoneyFormatError(f"not a yuan amount: {text[:32]!r}")
    whole, frac = match.group(1), (match.group(2) or "")
    return int(whole) * FEN_PER_YUAN + int(frac.ljust(2, "0"))


def fen_to_yuan_str(fen: int) -> str:
    """Fen as a plain yuan string with two decimals, as channels want them: 1234 -> "12.34"."""
    if not isinstance(fen, int) or isinstance(fen, bool):
        raise TypeError(f"fen must be int, not {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), FEN_PER_YUAN)
    return f"{sign}{whole}.{frac:02d}"


def format_yuan(fen: int) -> str:
    """Fen for people: thousands separators and two decimals, ``123456`` -> ``"1,234.56"``."""
    plain = fen_to_yuan_str(fen)
    sign = "-" if plain.startswith("-") else ""
    whole, frac = plain.lstrip("-").split(".")
    return f"{sign}{int(whole):,}.{frac}"


LATE_FEE_ROUNDING = ROUND_HALF_UP


def round_late_fee(fen: Decimal) -> int:
    """A late fee's exact total, in Decimal fen (the sum of every day's accrual), becomes whole fen
    ONCE, half up (四舍五入). A different site from ``round_to_fen``: the days are never rounded
    one by one (the rule says 按日累加, and a 1-fen-a-day rounding would compound into real money).
    """
    if not isinstance(fen, Decimal):
        raise TypeError(f"round_late_fee takes a Decimal, not {type(fen).__name__}")
    if not fen.is_finite():
        raise ValueError("amount must be finite")
    return int(fen.quantize(Decimal(1), rounding=LATE_FEE_ROUNDING))
