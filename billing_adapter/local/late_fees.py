"""Late-payment fees (电费违约金), 供电营业规则 Art. 98 (1996) and its 2024 successor.

The rule, tested in tests/billing_adapter/local/test_late_fees.py:

* Days: from the day after the due date to the payment day, both included; paid on or before
  the due date is 0 days and a fee of 0.
* Each overdue day accrues ``amount_fen x rate`` (simple: always on the original arrears, never on
  earlier fees) at the rate of the rules in force **on that day**: residential 1‰; other classes
  2‰ while the day is in the calendar year of the due date, 3‰ once the year has changed. A bill
  overdue across a year end, or across the 2024-06-01 switch, mixes rates day by day.
* The total, exact in Decimal fen, is rounded to whole fen once by
  ``portal.kernel.money.round_late_fee`` (half up); a positive total under the minimum (1 yuan)
  is charged as the minimum of the rules in force on the payment day.

The 2024 rules (NDRC Order No. 14, in force 2024-06-01) are configured with the 1996 rates and
minimum: DOMAIN.md marks their late-fee article UNCONFIRMED, so the switch exists as data and a
utility changes it by passing its own ``LateFeeRules``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from portal.kernel.money import round_late_fee

PER_MILLE = Decimal("0.001")
CUSTOMER_CLASSES = ("residential", "business")


@dataclass(frozen=True)
class LateFeeRule:
    """Rates (fraction of the arrears per day) and the minimum, from ``effective_from`` on."""

    effective_from: date
    residential_rate: Decimal
    current_year_rate: Decimal   # other classes, arrears of the year they fell due
    earlier_year_rate: Decimal   # other classes, once the calendar year has changed
    minimum_fen: int
    name: str = ""


@dataclass(frozen=True)
class LateFeeRules:
    rules: tuple[LateFeeRule, ...]

    def __post_init__(self) -> None:
        days = [rule.effective_from for rule in self.rules]
        if not days or days != sorted(set(days)):
            raise ValueError("late-fee rules must be non-empty and in effective-date order")

    def on(self, day: date) -> LateFeeRule:
        current = self.rules[0]
        for rule in self.rules:
            if rule.effective_from <= day:
                current = rule
        return current


RULES_1996 = LateFeeRule(date(1996, 10, 8), PER_MILLE, 2 * PER_MILLE, 3 * PER_MILLE, 100,
                         "供电营业规则（1996，电力工业部令第8号）第九十八条")
RULES_2024 = LateFeeRule(date(2024, 6, 1), PER_MILLE, 2 * PER_MILLE, 3 * PER_MILLE, 100,
                         "供电营业规则（2024，国家发展改革委令第14号）")
DEFAULT_RULES = LateFeeRules((RULES_1996, RULES_2024))


@dataclass(frozen=True)
class LateFee:
    fee_fen: int
    days: int


def late_fee(customer_class: str, amount_fen: int, due: date, paid: date,
             rules: LateFeeRules | None = None) -> LateFee:
    """The late fee on ``amount_fen`` of arrears due on ``due`` and paid on ``paid``."""
    if customer_class not in CUSTOMER_CLASSES:
        raise ValueError(f"customer class must be one of {', '.join(CUSTOMER_CLASSES)}")
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise TypeError(f"amount_fen must be int, not {type(amount_fen).__name__}")
    if amount_fen < 0:
        raise ValueError("amount_fen must be >= 0")
    if not isinstance(due, date) or not isinstance(paid, date):
        raise TypeError("due and paid must be dates")
    rules = rules or DEFAULT_RULES
    days = max((paid - due).days, 0)
    if days == 0 or amount_fen == 0:
        return LateFee(0, days)
    accrued = sum((amount_fen * daily_rate(customer_class, due, due + timedelta(days=n), rules)
                   for n in range(1, days + 1)), Decimal(0))
    fee = round_late_fee(accrued)
    return LateFee(max(fee, rules.on(paid).minimum_fen), days)


def daily_rate(customer_class: str, due: date, day: date,
               rules: LateFeeRules | None = None) -> Decimal:
    """The fraction of the arrears that overdue ``day`` accrues (e.g. ``Decimal("0.001")``)."""
    rule = (rules or DEFAULT_RULES).on(day)
    if customer_class == "residential":
        return rule.residential_rate
    return rule.current_year_rate if day.year == due.year else rule.earlier_year_rate
