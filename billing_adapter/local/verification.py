"""Bill verification (核): which computed bills a person checks before anyone is charged.

A bill is held in ``pending_review`` instead of issued when any of these holds:

* ``estimated_reading``: a reading of the period was estimated, not read;
* ``zero_usage``: the period used 0 kWh;
* ``usage_low`` / ``usage_high``: the kWh are below ``low_ratio`` x or above ``high_ratio`` x the
  trailing average. The average is over the latest versions of the bills of the 6 periods before
  this one that exist. With fewer than ``min_history_months`` of them (a new account) the two
  ratio rules are not applied, because an average of one or two months says little; nor when the
  average is 0 (those months were held as ``zero_usage`` already);
* ``reading_went_down``: a meter's reading is lower than its previous one. A meter change is a
  new ``Meter`` row: its readings start from 0 (so it never "goes down" against the old meter);
* ``no_previous_reading``: a meter has no earlier reading and was not installed in the period,
  so its usage cannot be told from its register (it is counted from 0 and a person checks);
* ``unknown_tariff``: the account's tariff code is not in the tariff book (nothing is priced);
* ``cannot_price``: the tariff cannot price this usage (not in force for the period, a TOU
  register it has no price for, registers that do not add up to the total); nothing is priced.

The stored reason (``Bill.review_reason``) is machine-readable: ``code key=value ...`` per reason,
joined by ``"; "``; ``portal.messages.review_reason_text`` turns it into words for staff.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

HISTORY_MONTHS = 6
REASON_MAX_LENGTH = 255  # Bill.review_reason


class Reason(enum.StrEnum):
    ESTIMATED_READING = "estimated_reading"
    ZERO_USAGE = "zero_usage"
    USAGE_LOW = "usage_low"
    USAGE_HIGH = "usage_high"
    READING_WENT_DOWN = "reading_went_down"
    NO_PREVIOUS_READING = "no_previous_reading"
    UNKNOWN_TARIFF = "unknown_tariff"
    CANNOT_PRICE = "cannot_price"


@dataclass(frozen=True)
class Thresholds:
    low_ratio: Decimal = Decimal("0.3")
    high_ratio: Decimal = Decimal("3")
    min_history_months: int = 3


@dataclass(frozen=True)
class Hold:
    reason: Reason
    detail: tuple[tuple[str, str], ...] = ()

    def encode(self) -> str:
        return " ".join([self.reason.value, *(f"{k}={v}" for k, v in self.detail)])


@dataclass(frozen=True)
class Facts:
    """What the bill run knows about one account's period."""

    kwh: Decimal
    history_kwh: Sequence[Decimal] = ()  # latest bill versions of up to 6 preceding periods
    estimated: bool = False
    went_down: tuple[str, Decimal, Decimal] | None = None  # meter_no, previous, current
    no_previous: str | None = None  # meter_no
    tariff_known: bool = True
    priced: bool = True  # False: the tariff could not price the usage


def check(facts: Facts, thresholds: Thresholds) -> tuple[Hold, ...]:
    """Every reason to hold this bill, in a fixed order; empty when it can be issued."""
    holds: list[Hold] = []
    if not facts.tariff_known:
        holds.append(Hold(Reason.UNKNOWN_TARIFF))
    elif not facts.priced:
        holds.append(Hold(Reason.CANNOT_PRICE))
    if facts.estimated:
        holds.append(Hold(Reason.ESTIMATED_READING))
    if facts.went_down is not None:
        meter, previous, current = facts.went_down
        holds.append(Hold(Reason.READING_WENT_DOWN,
                          (("meter", meter), ("previous", str(previous)),
                           ("current", str(current)))))
    if facts.no_previous is not None:
        holds.append(Hold(Reason.NO_PREVIOUS_READING, (("meter", facts.no_previous),)))
    if facts.went_down is None and facts.kwh == 0:
        holds.append(Hold(Reason.ZERO_USAGE))
    elif facts.went_down is None:
        holds.extend(against_average(facts.kwh, facts.history_kwh, thresholds))
    return tuple(holds)


def against_average(kwh: Decimal, history: Sequence[Decimal],
                    thresholds: Thresholds) -> list[Hold]:
    """``usage_low`` / ``usage_high`` against the trailing average (also the self-reading
    rule, ``portal.readings.rules``)."""
    recent = list(history)[-HISTORY_MONTHS:]
    if len(recent) < thresholds.min_history_months:
        return []
    average = (sum(recent, Decimal(0)) / len(recent)).quantize(Decimal("0.01"))
    if average == 0:
        return []
    detail = (("kwh", str(kwh)), ("average", str(average)), ("months", str(len(recent))))
    if kwh < thresholds.low_ratio * average:
        return [Hold(Reason.USAGE_LOW, detail)]
    if kwh > thresholds.high_ratio * average:
        return [Hold(Reason.USAGE_HIGH, detail)]
    return []


def encode(holds: Sequence[Hold]) -> str | None:
    """The stored ``review_reason`` (None: issue the bill), cut at a reason boundary to fit."""
    if not holds:
        return None
    text = ""
    for hold in holds:
        candidate = f"{text}; {hold.encode()}" if text else hold.encode()
        if len(candidate) > REASON_MAX_LENGTH:
            break
        text = candidate
    return text


def decode(text: str | None) -> list[Hold]:
    """The holds of a stored ``review_reason``; unknown codes are skipped, not guessed at."""
    holds = []
    for part in (text or "").split(";"):
        words = part.split()
        if not words or words[0] not in _CODES:
            continue
        detail = tuple((k, v) for k, _, v in (w.partition("=") for w in words[1:]))
        holds.append(Hold(Reason(words[0]), detail))
    return holds


_CODES = frozenset(r.value for r in Reason)
