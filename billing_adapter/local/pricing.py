"""Pricing one billing period's usage into bill lines a customer can recompute by hand.

The rules, each tested in tests/billing_adapter/local/test_pricing.py:

**Lines: base + tier increments.** A tiered tariff is defined as a base price plus an increment
for the kWh above each threshold (tier 2 = base + 0.05, tier 3 = base + 0.30), and the increments
add to *each* TOU price. So a bill shows

* one ``energy`` line per register: all of that register's kWh x its base price (``base`` for a
  meter without TOU registers, else ``peak``/``flat``/``valley``), and
* one ``tier_increment`` line per tier above the first that the usage reaches: the kWh above that
  tier's threshold x the increment.

This needs no split of TOU registers between tiers (an increment is the same for every register),
so no kWh are apportioned between registers at all. DOMAIN's example (Zhejiang, 2700 kWh so far
this tier year, 100 kWh this month) reads: 100 kWh x 0.538 = 53.80 and 40 kWh x 0.05 = 2.00,
total 55.80 yuan, the same as 60 x 0.538 + 40 x 0.588.

**Money.** kWh x price is exact in ``Decimal``; each line is quantised to the fen by
``portal.kernel.money.round_to_fen`` (half up) and the total is the integer sum of the lines.
A float anywhere in the inputs raises ``TypeError``.

**Thresholds.** Monthly thresholds count the kWh of the billing period from 0 (a season's bounds
apply when the period starts in one of its months); annual thresholds count from ``prior_kwh``,
the kWh already billed in the tier year before ``period_start``. Only the kWh above a threshold
pay its increment.

**A price change (or a tier-year start) inside the period** splits the period into segments at
each new version's ``effective_from`` (and each tier-year start). The period's kWh, and each TOU
register's kWh separately, are apportioned to the segments by days with cumulative rounding to
0.01 kWh: the first *i* segments get ``round_half_up(kWh x days_1..i / days_total, 0.01)``, so every
segment's share is >= 0 and the shares add up to the kWh exactly. Each segment is priced with its
own version, and its lines' descriptions name its dates. Thresholds are **not** pro-rated: the
running count continues across the segments in date order (first segment first), each segment's
kWh compared with its own version's bounds; at a tier-year start the annual count restarts at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing_adapter.base import BillLineInfo
from billing_adapter.local.tariffs import REGISTERS, TariffBook, TariffError, TariffVersion
from portal.kernel.money import fen_to_yuan_str, round_to_fen

KWH_STEP = Decimal("0.01")
REGISTER_ZH = {"base": "电度电费", "peak": "峰段电费", "flat": "平段电费", "valley": "谷段电费"}


class UsageError(ValueError):
    """Usage that cannot be priced: negative kWh, registers not adding up, a register the tariff
    has no price for."""


def _check_decimal(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite() or value < 0:
        raise UsageError(f"{what} must be a number >= 0")
    return value


@dataclass(frozen=True)
class Usage:
    kwh: Decimal
    peak_kwh: Decimal | None = None
    flat_kwh: Decimal | None = None
    valley_kwh: Decimal | None = None

    def __post_init__(self) -> None:
        _check_decimal(self.kwh, "kwh")
        registers = self.registers()
        for name, value in registers.items():
            _check_decimal(value, f"{name}_kwh")
        if registers and sum(registers.values(), Decimal(0)) != self.kwh:
            raise UsageError("peak, flat and valley kWh must add up to the total kWh")

    def registers(self) -> dict[str, Decimal]:
        """The TOU registers read (peak/flat/valley), or empty for a single-register meter."""
        values = {"peak": self.peak_kwh, "flat": self.flat_kwh, "valley": self.valley_kwh}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Quote:
    total_fen: int
    lines: tuple[BillLineInfo, ...]


def split_tiers(already: Decimal, kwh: Decimal,
                bounds: tuple[Decimal, ...]) -> list[tuple[int, Decimal]]:
    """Split ``kwh`` counted after ``already`` kWh into (tier, kWh) at the tier ``bounds``.

    Tier n+1 is everything above the last bound. Only tiers that get kWh are listed; the parts add
    up to ``kwh`` exactly."""
    parts: list[tuple[int, Decimal]] = []
    lower, end = Decimal(0), already + kwh
    for tier, upper in enumerate((*bounds, None), start=1):
        lo = max(already, lower)
        hi = end if upper is None else min(end, upper)
        if hi > lo:
            parts.append((tier, hi - lo))
        if upper is not None:
            lower = upper
    return parts


def apportion(kwh: Decimal, days: list[int]) -> list[Decimal]:
    """Apportion ``kwh`` to segments of ``days`` days, cumulatively rounded to 0.01 kWh."""
    total = sum(days)
    shares, done, cumulative = [], Decimal(0), 0
    for n in days:
        cumulative += n
        upto = (kwh * cumulative / total).quantize(KWH_STEP, rounding=ROUND_HALF_UP)
        if cumulative == total:
            upto = kwh
        shares.append(upto - done)
        done = upto
    return shares


def _num(value: Decimal) -> str:
    """A Decimal as a person writes it: 240, 40.5, 0.4883 (no exponent, no trailing zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _segments(book: TariffBook, code: str, start: date,
              end: date) -> list[tuple[date, date, TariffVersion, bool]]:
    """(first day, last day, version, starts a tier year) for each part of the period."""
    cuts = {start}
    for version in book.versions.get(code, ()):
        if start < version.effective_from <= end:
            cuts.add(version.effective_from)
    day = start
    while True:  # tier-year starts inside the period
        year = book.version_on(code, day).tier_year(day)
        if year is None or year[1] >= end:
            break
        day = year[1] + timedelta(days=1)
        cuts.add(day)
    ordered = sorted(cuts)
    out = []
    for i, first in enumerate(ordered):
        last = ordered[i + 1] - timedelta(days=1) if i + 1 < len(ordered) else end
        version = book.version_on(code, first)
        year = version.tier_year(first)
        out.append((first, last, version, i > 0 and year is not None and year[0] == first))
    return out


def quote(book: TariffBook, code: str, period_start: date, period_end: date, usage: Usage,
          prior_kwh: Decimal = Decimal(0)) -> Quote:
    """Price ``usage`` over [period_start, period_end] with tariff ``code``.

    ``prior_kwh``: kWh already billed in the same tier year before ``period_start`` (annual
    tariffs; ignored for monthly thresholds and tariffs without tiers)."""
    _check_decimal(prior_kwh, "prior_kwh")
    if not isinstance(usage, Usage):
        raise TypeError("usage must be a Usage")
    if period_end < period_start:
        raise UsageError("the period ends before it starts")
    if not book.has(code):
        raise TariffError(f"unknown tariff {code!r}")
    segments = _segments(book, code, period_start, period_end)
    split = len(segments) > 1
    registers = usage.registers() or {"base": usage.kwh}
    days = [(last - first).days + 1 for first, last, _v, _y in segments]
    shares = {name: apportion(kwh, days) for name, kwh in registers.items()}

    lines: list[BillLineInfo] = []
    running = prior_kwh
    for i, (first, last, version, new_year) in enumerate(segments):
        for name in registers:
            if name not in version.prices:
                raise UsageError(_missing_price(version, name))
        if i == 0 and version.thresholds == "monthly":
            running = Decimal(0)
        if new_year:
            running = Decimal(0)
        when = f"（{first.isoformat()}至{last.isoformat()}，{days[i]}天）" if split else ""
        segment_kwh = Decimal(0)
        for name in registers:
            kwh, price = shares[name][i], version.prices[name]
            segment_kwh += kwh
            amount = round_to_fen(kwh * price)
            share = "按天数分摊" if split else ""
            lines.append(BillLineInfo(
                kind="energy", amount_fen=amount, register=None if name == "base" else name,
                kwh=kwh, unit_price=price,
                description=(f"{REGISTER_ZH[name]}{when}：{share}{_num(kwh)} kWh × "
                             f"{_num(price)} 元/kWh = {fen_to_yuan_str(amount)} 元")))
        lines.extend(_increments(version, first, running, segment_kwh, when))
        running += segment_kwh
    return Quote(total_fen=sum(line.amount_fen for line in lines), lines=tuple(lines))


def _missing_price(version: TariffVersion, register: str) -> str:
    if register == "base":
        return (f"tariff {version.code!r} is time-of-use: give the peak/flat/valley kWh "
                f"({', '.join(r for r in REGISTERS if r in version.prices)})")
    return f"tariff {version.code!r} has no {register} price"


def _increments(version: TariffVersion, first: date, running: Decimal, kwh: Decimal,
                when: str) -> list[BillLineInfo]:
    if version.thresholds == "none":
        return []
    bounds = version.bounds_for_month(first.month)
    scope = "本月" if version.thresholds == "monthly" else "本阶梯年度"
    lines = []
    for tier, tier_kwh in split_tiers(running, kwh, bounds):
        if tier == 1:
            continue
        price = version.tier_increments[tier - 2]
        amount = round_to_fen(tier_kwh * price)
        band = (f"超过{_num(bounds[tier - 2])} kWh" if tier - 1 == len(bounds) else
                f"{_num(bounds[tier - 2])}至{_num(bounds[tier - 1])} kWh之间")
        lines.append(BillLineInfo(
            kind="tier_increment", amount_fen=amount, tier=tier, kwh=tier_kwh, unit_price=price,
            description=(f"第{tier}档加价{when}：{scope}累计{band}的{_num(tier_kwh)} kWh × "
                         f"{_num(price)} 元/kWh = {fen_to_yuan_str(amount)} 元")))
    return lines
