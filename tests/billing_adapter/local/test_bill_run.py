"""The bill run, on SQLite and PostgreSQL (COPY): bills come from readings and the shipped
tariffs, odd months are held with their reason, and running twice or after a crash bills each
account once."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa

from billing_adapter.local import bill_run
from billing_adapter.local.bill_run import PeriodError, RunConfig
from billing_adapter.local.verification import Thresholds
from portal.accounts.models import ElectricityAccount, Meter
from portal.bills.models import Bill, BillStatus
from portal.ledger.models import EntryKind, LedgerEntry
from portal.readings.models import Reading, ReadingSource, ReadingStatus
from tests import factories

D = Decimal


def _read(session, clock, meter: Meter, period: str, value: int | str, *,
          source: ReadingSource = ReadingSource.UTILITY,
          status: ReadingStatus = ReadingStatus.ACCEPTED, **registers: int) -> None:
    year, month = map(int, period.split("-"))
    session.add(Reading(meter_id=meter.id, period=period, read_on=date(year, month, 28),
                        value_kwh=D(value), source=source, status=status, created_at=clock.now(),
                        **{f"{k}_kwh": D(v) for k, v in registers.items()}))
    session.flush()


def _account(session, clock, n: int = 1, tariff: str = "beijing-residential",
             readings: tuple[tuple[str, int], ...] = (("2026-10", 1000), ("2026-11", 1300)),
             ) -> tuple[ElectricityAccount, Meter]:
    acct = factories.account(session, clock, account_no=f"99000000{n:02d}",
                             meter_no=f"9900000{n:05d}")
    acct.tariff_code = tariff
    meter = acct.meters[0]
    for period, value in readings:
        _read(session, clock, meter, period, value)
    session.commit()
    return acct, meter


def _run(session, clock, period: str = "2026-11", **config) -> bill_run.RunResult:
    book = bill_run.load_book(session)
    return bill_run.run(session, clock, book, period, RunConfig(**config))


def _bills(session, period: str = "2026-11") -> list[Bill]:
    return list(session.scalars(sa.select(Bill).where(Bill.period == period).order_by(Bill.id)))


def _charges(session) -> list[LedgerEntry]:
    return list(session.scalars(sa.select(LedgerEntry).where(
        LedgerEntry.kind == EntryKind.CHARGE).order_by(LedgerEntry.id)))


def test_a_reading_becomes_an_issued_bill_with_its_charge(session, clock) -> None:
    acct, _ = _account(session, clock)
    result = _run(session, clock)
    assert (result.issued, result.held, result.already_billed) == (1, 0, 0)
    [bill] = _bills(session)
    # 300 kWh on Beijing's monthly tiers: 300 x 0.4883 = 146.49, 60 kWh above 240 x 0.05 = 3.00
    assert bill.kwh == D(300) and bill.total_fen == 14949 == result.issued_fen
    assert [(line.kind.value, line.kwh, line.amount_fen) for line in bill.lines] == [
        ("energy", D(300), 14649), ("tier_increment", D(60), 300)]
    assert bill.status is BillStatus.ISSUED and bill.issued_at == clock.now()
    assert bill.review_reason is None
    assert (bill.period_start, bill.period_end, bill.due_date) == (
        date(2026, 11, 1), date(2026, 11, 30), date(2026, 12, 25))
    [charge] = _charges(session)
    assert (charge.account_id, charge.bill_id, charge.amount_fen, charge.ref,
            charge.effective_on) == (acct.id, bill.id, 14949, f"bill:{bill.id}:charge",
                                     date(2026, 12, 25))


def test_a_rerun_changes_nothing(session, clock) -> None:
    _account(session, clock)
    _account(session, clock, 2, readings=(("2026-10", 50), ("2026-11", 80)))
    assert _run(session, clock).issued == 2
    again = _run(session, clock)
    assert (again.billed, again.already_billed, again.accounts) == (0, 2, 2)
    assert len(_bills(session)) == 2 and len(_charges(session)) == 2


def test_a_crashed_run_resumes_and_bills_everyone_once(session, clock) -> None:
    for n in range(1, 6):
        _account(session, clock, n, readings=(("2026-10", 100 * n), ("2026-11", 100 * n + 90)))
    book = bill_run.load_book(session)
    chunks = []

    def crash_after_the_second_chunk(size: int) -> None:
        chunks.append(size)
        if len(chunks) == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        bill_run.run(session, clock, book, "2026-11", RunConfig(chunk_size=2),
                     progress=crash_after_the_second_chunk)
    session.rollback()
    assert len(_bills(session)) == 4  # two chunks were committed before the crash
    result = bill_run.run(session, clock, book, "2026-11", RunConfig(chunk_size=2))
    assert (result.issued, result.already_billed) == (1, 4)
    bills = _bills(session)
    assert sorted(b.account_id for b in bills) == sorted({b.account_id for b in bills})
    assert len(bills) == 5 and len(_charges(session)) == 5


def test_a_chunk_that_fails_writes_nothing(session, clock, monkeypatch) -> None:
    _account(session, clock)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    book = bill_run.load_book(session)
    monkeypatch.setattr(bill_run, "_write", broken)
    with pytest.raises(RuntimeError):
        bill_run.run(session, clock, book, "2026-11")
    session.rollback()
    assert _bills(session) == [] and _charges(session) == []


def test_a_chunk_that_cannot_be_computed_stops_the_run_after_the_chunks_before(
        session, clock, monkeypatch) -> None:
    for n in range(1, 4):
        _account(session, clock, n)
    book = bill_run.load_book(session)
    compute = bill_run._Planner._bill
    seen = []

    def fails_on_the_third_account(self, planned, bill_id, account_id, *args):
        seen.append(account_id)
        if len(seen) == 3:
            raise RuntimeError("bug")
        return compute(self, planned, bill_id, account_id, *args)

    monkeypatch.setattr(bill_run._Planner, "_bill", fails_on_the_third_account)
    with pytest.raises(RuntimeError, match="bug"):
        bill_run.run(session, clock, book, "2026-11", RunConfig(chunk_size=1))
    session.rollback()
    assert len(_bills(session)) == 2 and len(_charges(session)) == 2


def test_accounts_without_an_accepted_reading_are_not_billed(session, clock) -> None:
    _account(session, clock, 1, readings=(("2026-10", 100),))
    _, meter = _account(session, clock, 2, readings=(("2026-10", 100),))
    _read(session, clock, meter, "2026-11", 150, status=ReadingStatus.SUBMITTED)
    session.commit()
    result = _run(session, clock)
    assert (result.billed, result.accounts) == (0, 2) and _bills(session) == []


def test_annual_tiers_count_the_tier_year_billed_so_far(session, clock) -> None:
    acct, _ = _account(session, clock, tariff="zhejiang-residential",
                       readings=(("2026-10", 5000), ("2026-11", 5100)))
    # 2,700 kWh billed earlier in 2026 (two versions of October: only the latest counts), and
    # 900 kWh in December 2025, which is last tier year
    factories.bill(session, clock, acct, period="2026-03", amounts=(1,) * 14)
    factories.bill(session, clock, acct, period="2026-10", amounts=(1,) * 5)
    factories.bill(session, clock, acct, period="2026-10", amounts=(1,) * 13, version=2)
    factories.bill(session, clock, acct, period="2025-12", amounts=(1,) * 9)
    session.commit()
    _run(session, clock)
    [bill] = _bills(session)
    # DOMAIN's example: 100 kWh x 0.538 = 53.80, 40 kWh above 2,760 x 0.05 = 2.00
    assert [(line.kind.value, line.kwh, line.amount_fen) for line in bill.lines] == [
        ("energy", D(100), 5380), ("tier_increment", D(40), 200)]
    assert bill.total_fen == 5580 and bill.status is BillStatus.ISSUED


def test_time_of_use_registers_are_billed_by_register(session, clock) -> None:
    _, meter = _account(session, clock, tariff="zhejiang-residential", readings=())
    _read(session, clock, meter, "2026-10", 1000, peak=600, valley=400)
    _read(session, clock, meter, "2026-11", 1200, peak=720, valley=480)
    session.commit()
    _run(session, clock)
    [bill] = _bills(session)
    assert (bill.kwh, bill.peak_kwh, bill.flat_kwh, bill.valley_kwh) == (
        D(200), D(120), None, D(80))
    # 120 x 0.568 = 68.16, 80 x 0.288 = 23.04
    assert [(line.register, line.amount_fen) for line in bill.lines] == [
        ("peak", 6816), ("valley", 2304)]


def test_a_meter_change_counts_the_new_meter_from_zero(session, clock) -> None:
    acct, _ = _account(session, clock, readings=(("2026-10", 1000), ("2026-11", 1100)))
    new = Meter(account_id=acct.id, meter_no="990000077777", installed_on=date(2026, 11, 15))
    session.add(new)
    session.flush()
    _read(session, clock, new, "2026-11", 40)
    session.commit()
    _run(session, clock)
    [bill] = _bills(session)
    assert bill.kwh == D(140) and bill.status is BillStatus.ISSUED  # 100 old + 40 new


def _held(session, clock, **config) -> Bill:
    _run(session, clock, **config)
    [bill] = _bills(session)
    assert bill.status is BillStatus.PENDING_REVIEW and bill.issued_at is None
    assert _charges(session) == []  # nobody is charged before a person looks
    return bill


def test_an_estimated_reading_is_held_for_review(session, clock) -> None:
    _, meter = _account(session, clock, readings=(("2026-10", 1000),))
    _read(session, clock, meter, "2026-11", 1250, source=ReadingSource.ESTIMATED)
    session.commit()
    bill = _held(session, clock)
    assert bill.review_reason == "estimated_reading"
    assert bill.total_fen > 0 and bill.lines  # priced, so staff see what it would charge


def test_zero_usage_is_held(session, clock) -> None:
    _account(session, clock, readings=(("2026-10", 1000), ("2026-11", 1000)))
    assert _held(session, clock).review_reason == "zero_usage"


def test_a_reading_lower_than_the_last_is_held_unpriced(session, clock) -> None:
    _account(session, clock, readings=(("2026-10", 1000), ("2026-11", 990)))
    bill = _held(session, clock)
    assert bill.review_reason == (
        "reading_went_down meter=990000000001 previous=1000.00 current=990.00")
    assert (bill.kwh, bill.total_fen, bill.lines) == (0, 0, [])


def test_a_meter_that_rolled_over_is_billed_through_the_wrap(session, clock) -> None:
    """A six-digit register that passed 999999 and restarted: 999800 -> 100 is 300 kWh, the
    same bill as 1000 -> 1300."""
    _account(session, clock, readings=(("2026-10", 999800), ("2026-11", 100)))
    assert _run(session, clock).issued == 1
    [bill] = _bills(session)
    assert (bill.kwh, bill.total_fen, bill.review_reason) == (D(300), 14949, None)


def test_on_a_longer_dial_the_same_readings_went_down(session, clock) -> None:
    _account(session, clock, readings=(("2026-10", 999800), ("2026-11", 100)))
    assert _held(session, clock, meter_digits=8).review_reason == (
        "reading_went_down meter=990000000001 previous=999800.00 current=100.00")


def test_a_tou_register_that_rolled_over_is_billed_through_the_wrap(session, clock) -> None:
    _, meter = _account(session, clock, tariff="zhejiang-residential", readings=())
    _read(session, clock, meter, "2026-10", 999900, peak=999850, valley=50)
    _read(session, clock, meter, "2026-11", 200, peak=50, valley=150)  # total and peak wrapped
    session.commit()
    assert _run(session, clock).issued == 1
    [bill] = _bills(session)
    assert (bill.kwh, bill.peak_kwh, bill.valley_kwh) == (D(300), D(200), D(100))


def test_a_spike_against_the_six_month_average_is_held(session, clock) -> None:
    acct, _ = _account(session, clock, readings=(("2026-10", 1000), ("2026-11", 1700)))
    for month in ("2026-06", "2026-08", "2026-10"):
        factories.bill(session, clock, acct, period=month, amounts=(1, 1))  # 200 kWh each
    session.commit()
    bill = _held(session, clock, thresholds=Thresholds(high_ratio=D(3), min_history_months=3))
    assert bill.review_reason == "usage_high kwh=700.00 average=200.00 months=3"


def test_fewer_months_than_the_minimum_are_not_compared(session, clock) -> None:
    acct, _ = _account(session, clock, readings=(("2026-10", 1000), ("2026-11", 1700)))
    factories.bill(session, clock, acct, period="2026-10", amounts=(1, 1))
    session.commit()
    _run(session, clock)
    assert _bills(session)[0].status is BillStatus.ISSUED


def test_no_earlier_reading_on_an_old_meter_is_held(session, clock) -> None:
    _account(session, clock, readings=(("2026-11", 300),))
    assert _held(session, clock).review_reason == "no_previous_reading meter=990000000001"


def test_an_unknown_or_unpriceable_tariff_is_held_not_crashed(session, clock) -> None:
    _account(session, clock, 1, tariff="atlantis-residential")
    _, meter = _account(session, clock, 2, tariff="zhejiang-business-tou", readings=())
    _read(session, clock, meter, "2026-10", 100)
    _read(session, clock, meter, "2026-11", 300)  # no peak/flat/valley for a TOU-only tariff
    session.commit()
    result = _run(session, clock)
    assert result.held == 2
    assert [b.review_reason for b in _bills(session)] == ["unknown_tariff", "cannot_price"]


def test_a_tariff_not_yet_in_force_for_the_period_is_held(session, clock) -> None:
    _account(session, clock, tariff="zhejiang-business-tou",  # in force from 2023-01-01
             readings=(("2022-10", 100), ("2022-11", 300)))
    result = _run(session, clock, "2022-11")
    assert (result.issued, result.held) == (0, 1)
    assert [b.review_reason for b in _bills(session, "2022-11")] == ["cannot_price"]


def test_the_previous_reading_may_be_older_than_last_month(session, clock) -> None:
    _account(session, clock, readings=(("2026-08", 1000), ("2026-11", 1200)))
    _run(session, clock)
    assert _bills(session)[0].kwh == D(200)


def test_a_bad_period_is_refused() -> None:
    for text in ("2026-13", "2026-1", "26-11", "next", "1999-12"):
        with pytest.raises(PeriodError):
            bill_run.parse_period(text)
    assert bill_run.parse_period("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))


def test_an_account_billed_before_the_run_is_left_alone(session, clock) -> None:
    first, _ = _account(session, clock, 1)
    _account(session, clock, 2)
    by_hand = factories.bill(session, clock, first, period="2026-11")
    session.commit()
    result = _run(session, clock)
    assert (result.issued, result.already_billed) == (1, 1)
    assert [b.id for b in _bills(session) if b.account_id == first.id] == [by_hand.id]


def test_a_tou_register_that_went_down_is_held(session, clock) -> None:
    _, meter = _account(session, clock, tariff="zhejiang-residential", readings=())
    _read(session, clock, meter, "2026-10", 1000, peak=600, valley=400)
    _read(session, clock, meter, "2026-11", 1010, peak=590, valley=420)
    session.commit()
    bill = _held(session, clock)
    assert bill.review_reason == (
        "reading_went_down meter=990000000001/peak previous=600.00 current=590.00")


def test_a_bill_that_rounds_to_nothing_is_issued_without_a_charge(session, clock) -> None:
    _account(session, clock, readings=(("2026-10", "1000.00"), ("2026-11", "1000.01")))
    _run(session, clock)
    [bill] = _bills(session)
    # 0.01 kWh x 0.4883 = 0.004883 yuan: 0 fen, nothing to charge
    assert (bill.status, bill.total_fen, _charges(session)) == (BillStatus.ISSUED, 0, [])


def test_a_prepaid_balance_pays_the_new_bill_once(session, clock) -> None:
    """Overpaid before the run: 10000 fen pays part of a 14949 bill, 20000 all of it (5051 stays
    prepaid); accounts in other chunks too; a rerun allocates nothing twice."""
    from portal.bills import service as bills
    from portal.bills.service import PaymentState
    from portal.ledger import service as ledger

    part, _ = _account(session, clock, 1)
    whole, _ = _account(session, clock, 2)
    none, _ = _account(session, clock, 3)
    for acct, fen in ((part, 10000), (whole, 20000)):
        ledger.post(session, clock, account_id=acct.id, kind=EntryKind.PAYMENT, amount_fen=-fen,
                    ref=f"overpaid:{acct.id}", effective_on=date(2026, 11, 20))
    session.commit()
    before = session.execute(sa.select(LedgerEntry.id, LedgerEntry.amount_fen)
                             .order_by(LedgerEntry.id)).all()
    result = _run(session, clock, chunk_size=2)
    assert (result.issued, result.prepaid_fen) == (3, 10000 + 14949)
    by_account = {bill.account_id: bill for bill in _bills(session)}
    states = bills.summaries(session, [by_account[a.id] for a in (part, whole, none)],
                             date(2026, 12, 3))
    assert [(s.state, s.owed_fen) for s in states] == [
        (PaymentState.PARTIALLY_PAID, 4949), (PaymentState.PAID, 0),
        (PaymentState.UNPAID, 14949)]
    assert ledger.owed_by_account(session, [part.id, whole.id, none.id]) == {
        part.id: 4949, whole.id: -5051, none.id: 14949}
    after = session.execute(sa.select(LedgerEntry.id, LedgerEntry.amount_fen)
                            .order_by(LedgerEntry.id)).all()
    assert after[:len(before)] == before  # appended to, nothing rewritten
    again = _run(session, clock, chunk_size=2)
    assert (again.already_billed, again.prepaid_fen) == (3, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(LedgerEntry)) == len(after)
