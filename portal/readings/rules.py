"""Is a meter reading plausible? The rules, pure (no database, no Flask), each tested.

A reading is *refused* (``BadValue``, the person must fix the input) when a value is not a
number of kWh with at most two decimals, is negative, has more whole digits than the meter shows
(``digits``), or when a TOU meter's registers are missing (or a plain meter is given some).

A reading that is well formed is *flagged* for staff (stored ``flagged`` with the codes below,
and shown to the customer as a plain warning before they confirm) when:

* ``tou_sum_mismatch``: peak + flat + valley differ from the total register;
* ``reading_went_down``: the total (or a register) is below the meter's last accepted reading and
  this is not a **rollover**. A meter change is a new ``Meter`` row whose readings start afresh
  (the bill run's rule), so it never "goes down". A rollover is a register that wrapped past
  ``10**digits - 1`` back to 0: the reading is below the previous one, and counting through the
  wrap gives less than a tenth of the dial; the usage is then ``10**digits - previous + current``;
* ``no_previous_reading``: the meter has no accepted reading before and was not installed in
  the period (usage counted from 0, as the bill run does);
* ``usage_low`` / ``usage_high``: the implied usage is below ``low_ratio`` x or above
  ``high_ratio`` x the trailing average of the account's last 6 bills -- the bill verification
  rule itself (``billing_adapter.local.verification.against_average``, same thresholds and
  settings ``DIANFEI_REVIEW_*``), so a self-reading is held exactly when its bill would be.

``billing_rejected`` is added by the service when the billing system refuses a reading the rules
passed. Codes are stored as ``code key=value ...`` joined by ``"; "`` (the bill review format).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from billing_adapter.local.verification import Reason, Thresholds, against_average

REGISTERS = ("peak", "flat", "valley")
KWH_STEP = Decimal("0.01")
TOU_SUM_MISMATCH = "tou_sum_mismatch"
WENT_DOWN = Reason.READING_WENT_DOWN.value
NO_PREVIOUS = Reason.NO_PREVIOUS_READING.value
BILLING_REJECTED = "billing_rejected"
REASON_MAX_LENGTH = 255  # Reading.flag_reason


class BadValue(ValueError):
    """Input that cannot be a reading; ``code`` names the problem, ``field`` the input."""

    def __init__(self, code: str, field: str) -> None:
        super().__init__(f"{field}: {code}")
        self.code, self.field = code, field


@dataclass(frozen=True)
class Flag:
    code: str
    detail: tuple[tuple[str, str], ...] = ()

    def encode(self) -> str:
        return " ".join([self.code, *(f"{k}={v}" for k, v in self.detail)])


@dataclass(frozen=True)
class Registers:
    """A cumulative reading: the total register and, on a TOU meter, peak/flat/valley."""

    total: Decimal
    parts: Mapping[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True)
class Facts:
    reading: Registers
    meter_no: str
    previous: Registers | None       # the meter's last accepted reading before this one
    installed_in_period: bool = False
    history_kwh: Sequence[Decimal] = ()  # the account's last bills' kWh, oldest first
    digits: int = 6


@dataclass(frozen=True)
class Assessment:
    usage_kwh: Decimal | None                 # None: the reading went down (no usage to tell)
    register_usage: dict[str, Decimal]        # per TOU register, when it can be told
    flags: tuple[Flag, ...]
    rollover: bool = False

    @property
    def plausible(self) -> bool:
        return not self.flags


def check_value(value: Decimal | None, field_name: str, digits: int) -> Decimal:
    """A register value: a finite number >= 0 with at most 2 decimals and at most ``digits``
    whole digits; else ``BadValue``."""
    if value is None or not value.is_finite():  # NaN, Infinity: not a number on a meter
        raise BadValue("reading_value_required", field_name)
    if value < 0:
        raise BadValue("reading_value_negative", field_name)
    if value >= 10 ** digits:  # first: quantizing a number this large would overflow
        raise BadValue("reading_value_too_many_digits", field_name)
    if value != value.quantize(KWH_STEP):
        raise BadValue("reading_value_decimals", field_name)
    return value.quantize(KWH_STEP)


def check_shape(total: Decimal | None, parts: Mapping[str, Decimal | None],
                registers: Sequence[str], digits: int) -> Registers:
    """The reading as entered for a meter with TOU ``registers`` (empty for a plain meter)."""
    clean_total = check_value(total, "value_kwh", digits)
    given = {name: value for name, value in parts.items() if value is not None}
    if not registers:
        if given:
            raise BadValue("reading_registers_not_tou", next(iter(given)) + "_kwh")
        return Registers(clean_total)
    clean = {name: check_value(given.get(name), f"{name}_kwh", digits) for name in registers}
    extra = set(given) - set(registers)
    if extra:
        raise BadValue("reading_register_unknown", sorted(extra)[0] + "_kwh")
    return Registers(clean_total, clean)


def usage_between(previous: Decimal, current: Decimal,
                  digits: int) -> tuple[Decimal | None, bool]:
    """The one rule for what a register used from ``previous`` to ``current`` on a dial of
    ``digits`` whole digits: (usage, rolled over); usage None when the register went down
    without a rollover (counting through the wrap gives a tenth of the dial or more). The
    readings' check, the bill run and a reviewer's correction all use it."""
    if current >= previous:
        return current - previous, False
    dial = Decimal(10) ** digits
    wrapped = dial - previous + current
    if wrapped < dial / 10:
        return wrapped, True
    return None, False


def assess(facts: Facts, thresholds: Thresholds) -> Assessment:
    """Every reason to flag this reading, in a fixed order, and the usage it implies."""
    reading, previous = facts.reading, facts.previous
    flags: list[Flag] = []
    if reading.parts:
        parts_sum = sum(reading.parts.values(), Decimal(0))
        if parts_sum != reading.total:
            flags.append(Flag(TOU_SUM_MISMATCH, (("total", str(reading.total)),
                                                 ("sum", str(parts_sum)))))
    usage: Decimal | None
    register_usage: dict[str, Decimal] = {}
    rollover = False
    if previous is None:
        if not facts.installed_in_period:
            flags.append(Flag(NO_PREVIOUS, (("meter", facts.meter_no),)))
        usage, register_usage = reading.total, dict(reading.parts)
    else:
        usage, rollover = usage_between(previous.total, reading.total, facts.digits)
        if usage is None:
            flags.append(Flag(WENT_DOWN, (("meter", facts.meter_no),
                                          ("previous", str(previous.total)),
                                          ("current", str(reading.total)))))
        for name, value in reading.parts.items():
            before = previous.parts.get(name)
            if before is None:
                continue
            part, wrapped = usage_between(before, value, facts.digits)
            if part is None:
                flags.append(Flag(WENT_DOWN, (("meter", f"{facts.meter_no}/{name}"),
                                              ("previous", str(before)),
                                              ("current", str(value)))))
                continue
            rollover = rollover or wrapped
            register_usage[name] = part
    if usage is not None and not any(f.code == WENT_DOWN for f in flags):
        flags.extend(Flag(hold.reason.value, hold.detail)
                     for hold in against_average(usage, facts.history_kwh, thresholds))
    return Assessment(usage, register_usage, tuple(flags), rollover)


def encode(flags: Sequence[Flag]) -> str | None:
    """The stored ``flag_reason`` (None: nothing to flag), cut at a flag boundary to fit."""
    text = ""
    for flag in flags:
        candidate = f"{text}; {flag.encode()}" if text else flag.encode()
        if len(candidate) > REASON_MAX_LENGTH:
            break
        text = candidate
    return text or None


def decode(text: str | None) -> list[Flag]:
    flags = []
    for part in (text or "").split(";"):
        words = part.split()
        if words:
            detail = tuple((k, v) for k, _, v in (w.partition("=") for w in words[1:]))
            flags.append(Flag(words[0], detail))
    return flags
