from datetime import date
from decimal import Decimal

from billing_adapter.local.tariffs import TariffBook
from portal.accounts.models import CustomerClass
from portal.bills.explain import TierProgress, accrued_late_fee, tier_progress
from portal.bills.models import BillStatus
from tests import factories

BOOK = TariffBook.shipped()


def test_progress_arithmetic() -> None:
    bounds = (Decimal(2760), Decimal(4800))
    start, end = date(2026, 1, 1), date(2026, 12, 31)
    first = TierProgress(True, Decimal(2310), bounds, start, end)
    assert (first.tier, first.next_bound, first.left_kwh, first.percent) == (
        1, Decimal(2760), Decimal(450), 83)
    assert TierProgress(True, Decimal(2760), bounds, start, end).tier == 1  # at the bound
    second = TierProgress(True, Decimal(2761), bounds, start, end)
    assert (second.tier, second.left_kwh, second.percent) == (2, Decimal(2039), 100)
    third = TierProgress(True, Decimal(9000), bounds, start, end)
    assert (third.tier, third.next_bound, third.left_kwh) == (3, None, None)


def test_no_progress_without_tiers_or_a_known_tariff(session, clock) -> None:
    acct = factories.account(session, clock)
    bill = factories.bill(session, clock, acct)
    bill.tariff_code = "zhejiang-business-tou"
    assert tier_progress(session, BOOK, bill) is None
    bill.tariff_code = "gone-tariff"
    assert tier_progress(session, BOOK, bill) is None


def test_late_fee_only_for_issued_unpaid_bills_past_due(session, clock) -> None:
    acct = factories.account(session, clock)
    bill = factories.bill(session, clock, acct, due=date(2026, 11, 25))  # a draft, 170.48 yuan
    after = date(2026, 12, 3)
    assert accrued_late_fee(bill, acct, 17048, after) is None  # not issued
    bill.status = BillStatus.ISSUED
    assert accrued_late_fee(bill, acct, 0, after) is None  # paid
    assert accrued_late_fee(bill, acct, 17048, date(2026, 11, 25)) is None  # due today
    fee = accrued_late_fee(bill, acct, 17048, after)
    # 17048 x 0.001 x 8 = 136.384 -> 136 fen; a day 17.048 -> 17 fen
    assert fee is not None and (fee.days, fee.fee_fen, fee.per_day_fen) == (8, 136, 17)
    assert fee.per_mille == 1
    # Owing more than the bill (a late fee posted on it) never raises the base of the fee
    capped = accrued_late_fee(bill, acct, 99999, after)
    assert capped is not None and capped.arrears_fen == 17048 and capped.fee_fen == 136
    acct.customer_class = CustomerClass.BUSINESS
    fee = accrued_late_fee(bill, acct, 17048, date(2027, 1, 2))
    # business: Nov 26-Dec 31 = 36 days x 2 per mille, Jan 1-2 = 2 days x 3 per mille
    # 17048 x (0.072 + 0.006) = 1329.744 -> 1330 fen; today's rate is 3 per mille
    assert fee is not None and (fee.days, fee.fee_fen, fee.per_mille) == (38, 1330, 3)


def test_the_page_shows_the_posted_late_fees_and_never_less(session, clock) -> None:
    from portal.bills import late_fees
    from portal.bills import service as bills

    acct = factories.account(session, clock)
    bill = factories.bill(session, clock, acct, due=date(2026, 11, 25))  # 170.48 yuan
    bills.issue(session, clock, bill)
    late_fees.accrue(session, clock, date(2026, 12, 3))
    posted = late_fees.posted_late_fees(session, [bill.id])[bill.id]
    fee = accrued_late_fee(bill, acct, 17048 + posted, date(2026, 12, 3), posted)
    # the arrears are the bill without its fees; today's fee is exactly what was posted today
    assert fee is not None and (fee.arrears_fen, fee.fee_fen, fee.posted_fen) == (17048, 136, 136)
    later = accrued_late_fee(bill, acct, 17048 + posted, date(2026, 12, 4), posted)
    assert later is not None and (later.fee_fen, later.posted_fen) == (153, 136)
    fees_only = accrued_late_fee(bill, acct, posted, date(2026, 12, 4), posted)
    assert fees_only is None  # the bill itself is paid; only its fees are owed
