"""The BillingSystem contract: one suite, every implementation.

A test module subclasses ``BillingContract`` and provides the ``billing`` fixture: a ``Harness``
with the system under test and a ``seed`` that writes rows into the billing system's own
database. The same inputs must give the same observable results on the embedded engine and on
the HTTP adapter talking to a billing server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session

from billing_adapter.base import (
    Adjustment,
    BillingRejected,
    BillingSystem,
    PaymentPosting,
    PostingReceipt,
    ReadingSubmission,
)
from portal.bills import service as bills
from portal.kernel.clock import FrozenClock
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from tests import factories

ACCOUNT, METER = "9900000001", "990000001234"
OTHER, OTHER_METER = "9900000002", "990000005678"
PAID_AT = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)
# the seeded bills: period -> line amounts in fen (issued, so charged to the ledger)
BILLS = {"2026-09": (9000,), "2026-10": (11719, 5329), "2026-11": (8000, 2000)}


@dataclass
class Harness:
    system: BillingSystem
    seed: Callable[[Callable[[Session], Any]], Any]


def seed_world(session: Session, clock: FrozenClock) -> None:
    account = factories.account(session, clock, ACCOUNT, meter_no=METER)
    factories.account(session, clock, OTHER, holder="另一户", meter_no=OTHER_METER)
    session.add(Reading(meter_id=account.meters[0].id, period="2026-10",
                        read_on=date(2026, 10, 28), value_kwh=Decimal("1000.00"),
                        source=ReadingSource.UTILITY, status=ReadingStatus.ACCEPTED,
                        created_at=clock.now()))
    for period, amounts in BILLS.items():
        bills.issue(session, clock, factories.bill(session, clock, account, period, amounts))


def posting(order_no: str = "DF202612030001", amount_fen: int = 17048,
            account_no: str = ACCOUNT) -> PaymentPosting:
    return PaymentPosting(order_no=order_no, account_no=account_no, amount_fen=amount_fen,
                          paid_at=PAID_AT, channel="wechat", bill_periods=("2026-10",))


def reading(value: str, source: str = "utility", meter_no: str = METER,
            account_no: str = ACCOUNT) -> ReadingSubmission:
    return ReadingSubmission(account_no=account_no, meter_no=meter_no, period="2026-11",
                             read_on=date(2026, 11, 28), value_kwh=Decimal(value), source=source)


def adjustment(no: str = "ADJ-1", amount_fen: int = -1000, period: str = "2026-10") -> Adjustment:
    return Adjustment(adjustment_no=no, account_no=ACCOUNT, period=period,
                      amount_fen=amount_fen, reason="争议处理：多计电量退还")


def reverse(system: BillingSystem, refund_no: str, amount_fen: int,
            order_no: str = "DF202612030001") -> PostingReceipt:
    return system.reverse_payment(order_no, f"refund {refund_no}", reversal_no=refund_no,
                                  amount_fen=amount_fen)


def rejected(call: Callable[[], object]) -> str:
    with pytest.raises(BillingRejected) as caught:
        call()
    return caught.value.code


class BillingContract:
    @pytest.fixture
    def billing(self) -> Harness:
        raise NotImplementedError("a test module provides the billing fixture")

    @pytest.fixture
    def system(self, billing: Harness, clock: FrozenClock) -> BillingSystem:
        billing.seed(lambda session: seed_world(session, clock))
        return billing.system

    def test_is_a_billing_system(self, system: BillingSystem) -> None:
        assert isinstance(system, BillingSystem)

    def test_account_as_the_billing_system_knows_it(self, system: BillingSystem) -> None:
        info = system.get_account(ACCOUNT)
        assert (info.account_no, info.holder_name, info.customer_class, info.tariff_code,
                info.district_code) == (ACCOUNT, "测试户", "residential",
                                        "beijing-residential", f"d-{ACCOUNT}")

    def test_unknown_account_is_rejected_everywhere(self, system: BillingSystem) -> None:
        assert rejected(lambda: system.get_account("0000000000")) == "unknown_account"
        assert rejected(lambda: system.list_bills("0000000000", "2026-01")) == "unknown_account"
        assert rejected(lambda: system.post_payment(posting(account_no="0000000000"))
                        ) == "unknown_account"
        assert rejected(lambda: system.submit_reading(reading("1200", account_no="0000000000"))
                        ) == "unknown_account"

    def test_bills_since_a_period_with_their_lines(self, system: BillingSystem) -> None:
        listed = system.list_bills(ACCOUNT, "2026-10")
        assert [b.period for b in listed] == ["2026-10", "2026-11"]
        october = listed[0]
        assert [line.amount_fen for line in october.lines] == [11719, 5329]
        assert october.total_fen == sum(line.amount_fen for line in october.lines) == 17048
        assert (october.status, october.version, october.kwh) == ("issued", 1, Decimal(200))
        assert october.lines[0].unit_price == Decimal("0.5")
        assert october.lines[0].kwh == Decimal(100) and october.lines[0].tier == 1
        assert system.list_bills(ACCOUNT, "2027-01") == []
        assert system.list_bills(OTHER, "2026-01") == []
        assert rejected(lambda: system.list_bills(ACCOUNT, "2026-13")) == "invalid_period"

    def test_a_payment_posts_once_per_order_number(self, system: BillingSystem) -> None:
        first = system.post_payment(posting())
        again = system.post_payment(posting())
        assert (first.duplicate, again.duplicate) == (False, True)
        assert first.order_no == again.order_no == "DF202612030001"
        assert first.billing_ref == again.billing_ref
        other = system.post_payment(posting("DF202612030002", 500))
        assert not other.duplicate and other.billing_ref != first.billing_ref

    def test_an_order_number_reused_with_another_amount_is_refused(
            self, system: BillingSystem) -> None:
        system.post_payment(posting())
        assert rejected(lambda: system.post_payment(posting(amount_fen=1))) == "order_conflict"
        assert rejected(lambda: system.post_payment(posting(account_no=OTHER))
                        ) == "order_conflict"

    @pytest.mark.parametrize("amount", [0, -100])
    def test_a_payment_must_be_positive(self, system: BillingSystem, amount: int) -> None:
        assert rejected(lambda: system.post_payment(posting(amount_fen=amount))
                        ) == "invalid_amount"

    def test_a_reversal_happens_once(self, system: BillingSystem) -> None:
        posted = system.post_payment(posting())
        first = reverse(system, "RF1", 17048)
        again = reverse(system, "RF1", 17048)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert first.order_no == "DF202612030001"
        assert first.billing_ref == posted.billing_ref
        assert rejected(lambda: reverse(system, "RF2", 1)) == "reversal_too_large"
        assert rejected(lambda: reverse(system, "RF3", 1, order_no="NOPE")) == "unknown_order"

    def test_partial_reversals_add_up_to_the_posting_and_no_further(
            self, system: BillingSystem) -> None:
        system.post_payment(posting())  # 17048 fen
        assert not reverse(system, "RF1", 5000).duplicate
        assert reverse(system, "RF1", 5000).duplicate  # the retry of RF1 takes nothing more
        assert not reverse(system, "RF2", 5000).duplicate
        assert rejected(lambda: reverse(system, "RF3", 7049)) == "reversal_too_large"
        assert not reverse(system, "RF3", 7048).duplicate  # a refused one took nothing
        assert rejected(lambda: reverse(system, "RF4", 1)) == "reversal_too_large"
        assert reverse(system, "RF2", 5000).duplicate  # repeats still answer once it is spent

    def test_a_reversal_number_belongs_to_one_order_and_amount(
            self, system: BillingSystem) -> None:
        system.post_payment(posting())
        system.post_payment(posting("DF202612030002", 500))
        reverse(system, "RF1", 300)
        assert rejected(lambda: reverse(system, "RF1", 301)) == "reversal_conflict"
        assert rejected(lambda: reverse(system, "RF1", 300, order_no="DF202612030002")
                        ) == "reversal_conflict"
        assert not reverse(system, "RF2", 500, order_no="DF202612030002").duplicate

    @pytest.mark.parametrize("amount", [0, -100])
    def test_a_reversal_must_be_positive(self, system: BillingSystem, amount: int) -> None:
        system.post_payment(posting())
        assert rejected(lambda: reverse(system, "RF1", amount)) == "invalid_amount"
        assert not reverse(system, "RF1", 17048).duplicate

    def test_an_adjustment_makes_one_new_version(self, system: BillingSystem) -> None:
        adjusted = system.apply_adjustment(adjustment())
        assert (adjusted.period, adjusted.version, adjusted.status) == ("2026-10", 2, "issued")
        assert adjusted.total_fen == 17048 - 1000
        assert [(line.kind, line.amount_fen) for line in adjusted.lines] == [
            ("energy", 11719), ("energy", 5329), ("adjustment", -1000)]
        assert adjusted.lines[-1].description == "争议处理：多计电量退还"
        assert system.apply_adjustment(adjustment()) == adjusted  # idempotent on its number
        listed = system.list_bills(ACCOUNT, "2026-10")
        assert [(b.period, b.version) for b in listed] == [("2026-10", 2), ("2026-11", 1)]
        debit = system.apply_adjustment(adjustment("ADJ-2", 250))
        assert (debit.version, debit.total_fen) == (3, 17048 - 1000 + 250)
        assert rejected(lambda: system.apply_adjustment(adjustment(amount_fen=-5))
                        ) == "adjustment_conflict"

    def test_adjustments_that_cannot_apply_are_refused(self, system: BillingSystem) -> None:
        assert rejected(lambda: system.apply_adjustment(adjustment(period="2025-01"))
                        ) == "unknown_bill"
        assert rejected(lambda: system.apply_adjustment(adjustment(amount_fen=-17049))
                        ) == "adjustment_exceeds_bill"
        assert rejected(lambda: system.apply_adjustment(adjustment(amount_fen=0))
                        ) == "invalid_amount"
        assert system.list_bills(ACCOUNT, "2026-10")[0].version == 1  # nothing was written

    def test_readings(self, system: BillingSystem) -> None:
        receipt = system.submit_reading(reading("1234.50"))
        assert receipt.accepted and receipt.reading_ref and receipt.reason is None
        self_read = system.submit_reading(reading("1240", source="customer"))
        assert not self_read.accepted and self_read.reason == "awaiting_validation"
        assert self_read.reading_ref != receipt.reading_ref

    def test_a_reading_below_the_previous_one_is_refused(self, system: BillingSystem) -> None:
        assert rejected(lambda: system.submit_reading(reading("999.99"))
                        ) == "reading_below_previous"
        # another meter (e.g. after a meter change) starts its own sequence
        assert system.submit_reading(reading("5", meter_no=OTHER_METER, account_no=OTHER)
                                     ).accepted

    def test_malformed_readings_are_refused(self, system: BillingSystem) -> None:
        assert rejected(lambda: system.submit_reading(reading("-1"))) == "negative_reading"
        assert rejected(lambda: system.submit_reading(reading("1300", meter_no=OTHER_METER))
                        ) == "unknown_meter"
        assert rejected(lambda: system.submit_reading(reading("1300", source="guess"))
                        ) == "invalid_source"
