"""Matching a statement against our orders and refunds: every difference kind, 补单 through the
normal path, cut-off rechecks, idempotent reruns and new versions. SQLite and PostgreSQL."""

from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from payments import service as payments
from payments.channels.base import ChannelUnavailable, Scene, StatementFile, Trade, TradeState
from payments.models import PaymentOrder
from payments.reconcile import service
from payments.reconcile.lines import BadStatement
from payments.reconcile.models import Difference, DifferenceStatus, Statement, StatementLine
from payments.states import OrderStatus, RefundStatus
from portal.kernel.audit import AuditEntry
from portal.kernel.errors import Conflict
from portal.settings import Settings
from tests import factories
from tests.payments.fakes import FakeChannel

from .bills import BEIJING, wechat_bill, wechat_row

DAY = date(2026, 12, 2)
NOON = datetime(2026, 12, 2, 12, tzinfo=BEIJING)
ZONE = Settings().zone


@pytest.fixture
def account_id(session, clock):
    acct = factories.account(session, clock)
    session.commit()
    return acct.id


def order(session, clock, account_id, amount_fen=8000, paid_at=NOON,
          status=OrderStatus.SUCCEEDED) -> PaymentOrder:
    o = payments.create_order(session, clock, account_id=account_id, customer_id=None,
                              channel="wechat", scene=Scene.DESKTOP, bill_ids=[],
                              topup_fen=amount_fen, lifetime=timedelta(minutes=30),
                              first_query_after=timedelta(minutes=1))
    if status == OrderStatus.SUCCEEDED:
        payments.apply_trade(session, clock, "wechat", Trade(
            o.order_no, TradeState.SUCCEEDED, amount_fen, channel_trade_no="T", paid_at=paid_at),
            "notify")
    elif status != OrderStatus.CREATED:
        o.status = status
    session.commit()
    return o


def run(session, clock, tmp_path, rows, day=DAY, channel=None):
    bill = None if rows is None else StatementFile(wechat_bill(rows), ".csv.gz")
    return service.run_day(session, clock, "wechat", day, bill, directory=tmp_path, zone=ZONE,
                           channel=channel)


def diffs(session, **where) -> dict[str, tuple[str, str]]:
    return {d.key: (d.kind.value, d.status.value) for d in session.scalars(
        sa.select(Difference).filter_by(**where).order_by(Difference.id))}


def test_a_clean_day_has_no_differences_and_keeps_the_file(session, clock, tmp_path,
                                                             account_id) -> None:
    a = order(session, clock, account_id, 8000)
    b = order(session, clock, account_id, 120)
    result = run(session, clock, tmp_path, [wechat_row(a.order_no, 8000, NOON),
                                            wechat_row(b.order_no, 120, NOON)])
    assert result.new and sum(result.found.values()) == 0
    st = result.statement
    assert (st.version, st.line_count, st.payment_fen, st.differences) == (1, 2, 8120, 0)
    assert Path(st.path).read_bytes()[:2] == b"\x1f\x8b" and st.path.endswith(
        f"wechat/2026-12-02/{st.sha256}.csv.gz")


def test_every_kind_of_difference(session, clock, tmp_path, account_id) -> None:
    same = order(session, clock, account_id, 1000)
    differs = order(session, clock, account_id, 2000)
    closed = order(session, clock, account_id, 3000, status=OrderStatus.CLOSED)
    missing = order(session, clock, account_id, 4000)        # we say paid; WeChat does not
    refunded = order(session, clock, account_id, 5000, paid_at=NOON - timedelta(days=3))
    refund = payments.request_refund(session, clock, order_no=refunded.order_no,
                                     amount_fen=500, reason="twice",
                                     requested_by=factories_staff(session, clock))
    session.commit()
    result = run(session, clock, tmp_path, [
        wechat_row(same.order_no, 1000, NOON),
        wechat_row(differs.order_no, 2500, NOON),
        wechat_row(closed.order_no, 3000, NOON),
        wechat_row("DF-NOT-OURS", 700, NOON),
        wechat_row(refunded.order_no, 5000, NOON, refund_no=refund.refund_no, refund_fen=500),
        wechat_row(refunded.order_no, 5000, NOON, refund_no="RF-UNKNOWN", refund_fen=100),
    ])
    assert diffs(session) == {
        f"payment:{differs.order_no}": ("amount_mismatch", "open"),
        f"payment:{closed.order_no}": ("status_mismatch", "open"),
        "payment:DF-NOT-OURS": ("channel_only", "open"),
        f"refund:{refund.refund_no}": ("status_mismatch", "open"),  # we never sent it
        "refund:RF-UNKNOWN": ("channel_only", "open"),
        f"payment:{missing.order_no}": ("local_only", "recheck"),
    }
    assert dict(result.found) == {"amount_mismatch": 1, "status_mismatch": 2,
                                  "channel_only": 2, "local_only": 1}
    mismatch = session.scalar(sa.select(Difference).filter_by(kind="amount_mismatch"))
    assert (mismatch.channel_amount_fen, mismatch.local_amount_fen, mismatch.account_id) == (
        2500, 2000, account_id)


def factories_staff(session, clock) -> int:
    from portal.backoffice import service as staff_service
    from portal.backoffice.models import StaffRole

    return staff_service.create_staff(session, clock, username="recon-collector",
                                      display_name="c", password="Long-enough-pass-1",
                                      role=StaffRole.ADMIN).id


def test_a_succeeded_refund_the_channel_does_not_list_is_local_only(session, clock, tmp_path,
                                                                     account_id) -> None:
    paid = order(session, clock, account_id, 5000, paid_at=NOON - timedelta(days=2))
    refund = payments.request_refund(session, clock, order_no=paid.order_no, amount_fen=500,
                                     reason="x", requested_by=factories_staff(session, clock))
    refund.status, refund.finished_at = RefundStatus.SUCCEEDED, NOON
    session.commit()
    run(session, clock, tmp_path, None)  # the channel has no bill that day: an empty day
    assert diffs(session) == {f"refund:{refund.refund_no}": ("local_only", "recheck")}
    assert session.scalar(sa.select(Statement.path)) is None


def test_rerunning_a_day_changes_nothing(session, clock, tmp_path, account_id) -> None:
    a = order(session, clock, account_id, 1000)
    rows = [wechat_row(a.order_no, 1500, NOON)]
    first = run(session, clock, tmp_path, rows)
    again = run(session, clock, tmp_path, rows)
    assert not again.new and again.statement.id == first.statement.id
    assert session.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 1
    assert len(diffs(session)) == 1


def test_a_refetched_statement_with_other_bytes_is_a_new_version(session, clock, tmp_path,
                                                                  account_id) -> None:
    a = order(session, clock, account_id, 1000)
    run(session, clock, tmp_path, [wechat_row(a.order_no, 1500, NOON)])
    second = run(session, clock, tmp_path, [wechat_row(a.order_no, 1000, NOON)])
    assert second.new and second.statement.version == 2
    assert sorted(diffs(session).values()) == [("amount_mismatch", "superseded")]
    assert session.scalar(sa.select(sa.func.count()).select_from(Statement)) == 2


def test_a_bad_file_keeps_nothing(session, clock, tmp_path, account_id) -> None:
    bill = StatementFile(wechat_bill([wechat_row("DF1", 100, NOON)], summary_count=2), ".csv.gz")
    with pytest.raises(BadStatement):
        service.run_day(session, clock, "wechat", DAY, bill, directory=tmp_path, zone=ZONE)
    assert session.scalar(sa.select(sa.func.count()).select_from(StatementLine)) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Statement)) == 0
    assert not list(tmp_path.rglob("*.gz"))


def test_a_cut_off_order_clears_the_next_day_others_open(session, clock, tmp_path,
                                                         account_id) -> None:
    late = order(session, clock, account_id, 1000,
                 paid_at=datetime(2026, 12, 2, 23, 59, 59, tzinfo=BEIJING))
    lost = order(session, clock, account_id, 2000)
    run(session, clock, tmp_path, [])
    assert set(diffs(session).values()) == {("local_only", "recheck")}
    # WeChat booked the late one at 00:00:01 on the 3rd
    run(session, clock, tmp_path, [wechat_row(late.order_no, 1000, NOON + timedelta(hours=12))],
        day=DAY + timedelta(days=1))
    assert diffs(session) == {f"payment:{late.order_no}": ("local_only", "auto_resolved"),
                              f"payment:{lost.order_no}": ("local_only", "open")}


def test_channel_only_payment_of_an_open_order_is_backfilled_through_apply_trade(
        session, clock, tmp_path, account_id) -> None:
    pending = order(session, clock, account_id, 3000, status=OrderStatus.PENDING)
    unpaid = order(session, clock, account_id, 400, status=OrderStatus.PENDING)
    short = order(session, clock, account_id, 900, status=OrderStatus.PENDING)
    fake = FakeChannel()
    fake.pay(pending.order_no, 3000)
    fake.pay(short.order_no, 800)  # the channel says paid, but less: review, staff decide
    result = run(session, clock, tmp_path, [wechat_row(pending.order_no, 3000, NOON),
                                            wechat_row(unpaid.order_no, 400, NOON),
                                            wechat_row(short.order_no, 800, NOON)],
                 channel=fake)
    assert result.auto_resolved == 1
    session.expire_all()
    assert session.get(PaymentOrder, pending.id).status == OrderStatus.SUCCEEDED
    assert session.get(PaymentOrder, short.id).status == OrderStatus.REVIEW
    assert diffs(session) == {f"payment:{pending.order_no}": ("channel_only", "auto_resolved"),
                              f"payment:{unpaid.order_no}": ("channel_only", "open"),
                              f"payment:{short.order_no}": ("channel_only", "open")}
    entry = session.scalar(sa.select(AuditEntry).filter_by(action="reconcile.backfill"))
    assert entry.actor.value == "system" and entry.amount_fen == 3000


def test_staff_resolve_with_a_note_once(session, clock, tmp_path, account_id) -> None:
    run(session, clock, tmp_path, [wechat_row("DF-NOT-OURS", 700, NOON)])
    diff = session.scalar(sa.select(Difference))
    staff_id = factories_staff(session, clock)
    with pytest.raises(service.NoteRequired):
        service.resolve(session, clock, staff_id, diff, "  ")
    service.resolve(session, clock, staff_id, diff, "refunded by hand, ticket 42")
    session.commit()
    session.refresh(diff)
    assert (diff.status, diff.resolved_by_id, diff.resolution) == (
        DifferenceStatus.RESOLVED, staff_id, "refunded by hand, ticket 42")
    assert session.scalar(sa.select(AuditEntry.staff_id).filter_by(
        action="reconcile.resolve")) == staff_id
    with pytest.raises(Conflict):
        service.resolve(session, clock, staff_id, diff, "again")


def test_values_copy_would_misread_are_kept_as_they_are(session, clock, tmp_path,
                                                        account_id) -> None:
    run(session, clock, tmp_path, [wechat_row("DF\\N", 100, NOON),
                                   wechat_row("DF\\t\t1", 200, NOON)])
    assert set(diffs(session)) == {"payment:DF\\N", "payment:DF\\t\t1"}
    assert session.scalar(sa.select(sa.func.count()).select_from(StatementLine).where(
        StatementLine.refund_no.is_(None))) == 2


def test_lines_load_in_batches_with_progress(session, clock, tmp_path, account_id,
                                             monkeypatch) -> None:
    monkeypatch.setattr(service, "BATCH", 20)  # COPY chunks of 2, INSERT batches of 5
    loaded: list[int] = []
    rows = [wechat_row(f"DF-{n:03d}", 100 + n, NOON) for n in range(47)]
    service.run_day(session, clock, "wechat", DAY, StatementFile(wechat_bill(rows), ".csv.gz"),
                    directory=tmp_path, zone=ZONE, progress=loaded.append)
    assert loaded == [20, 20, 7]
    amounts = session.scalars(sa.select(StatementLine.amount_fen)
                              .order_by(StatementLine.line_no)).all()
    assert amounts == [100 + n for n in range(47)]


def test_a_day_matched_after_the_next_one_settles_its_rechecks_at_once(
        session, clock, tmp_path, account_id) -> None:
    late = order(session, clock, account_id, 1000,
                 paid_at=datetime(2026, 12, 2, 23, 59, 59, tzinfo=BEIJING))
    lost = order(session, clock, account_id, 2000)
    run(session, clock, tmp_path, [wechat_row(late.order_no, 1000, NOON + timedelta(hours=12))],
        day=DAY + timedelta(days=1))
    run(session, clock, tmp_path, [])  # the 2nd after the 3rd: the late order is listed there
    assert diffs(session) == {f"payment:{lost.order_no}": ("local_only", "open")}


def test_a_channel_that_does_not_answer_leaves_the_difference_open(session, clock, tmp_path,
                                                                    account_id) -> None:
    pending = order(session, clock, account_id, 3000, status=OrderStatus.PENDING)
    fake = FakeChannel(fail_next=[ChannelUnavailable("timeout")])
    result = run(session, clock, tmp_path, [wechat_row(pending.order_no, 3000, NOON)],
                 channel=fake)
    assert result.auto_resolved == 0
    assert diffs(session) == {f"payment:{pending.order_no}": ("channel_only", "open")}


def test_an_alipay_day_with_a_refund_matches_through_the_same_path(session, clock, tmp_path,
                                                                   account_id) -> None:
    from .bills import alipay_bill

    o = payments.create_order(session, clock, account_id=account_id, customer_id=None,
                              channel="alipay", scene=Scene.DESKTOP, bill_ids=[],
                              topup_fen=9000, lifetime=timedelta(minutes=30),
                              first_query_after=timedelta(minutes=1))
    payments.apply_trade(session, clock, "alipay", Trade(
        o.order_no, TradeState.SUCCEEDED, 9000, channel_trade_no="2026120222001", paid_at=NOON),
        "notify")
    refund = payments.request_refund(session, clock, order_no=o.order_no, amount_fen=1000,
                                     reason="x", requested_by=factories_staff(session, clock))
    refund.status, refund.finished_at = RefundStatus.SUCCEEDED, NOON
    session.commit()
    bill = alipay_bill([("2026120222001", o.order_no, 9000, NOON, ""),
                        ("2026120222001", o.order_no, -1000, NOON, refund.refund_no)])
    result = service.run_day(session, clock, "alipay", DAY, StatementFile(bill, ".zip"),
                             directory=tmp_path, zone=ZONE)
    assert (result.statement.line_count, result.statement.payment_fen,
            result.statement.refund_fen) == (2, 9000, 1000)
    assert diffs(session) == {}
    assert result.statement.path.endswith(".zip")


def test_refunds_without_our_refund_number_are_channel_only_not_a_failed_day(
        session, clock, tmp_path, account_id) -> None:
    """A refund made by hand at the channel (Stripe's dashboard, Alipay's merchant site) carries
    none of our refund numbers: it is a channel-only difference for staff, one per line, and the
    rest of the day still matches."""
    import json

    from .test_stripe import txn

    data = json.dumps([txn("refund", 1000, fee=0, order_no="DF1"),
                       txn("refund", 500, fee=0, order_no="DF1")]).encode()
    result = service.run_day(session, clock, "stripe", DAY, StatementFile(data, ".json"),
                             directory=tmp_path, zone=ZONE)
    assert result.statement.matched_at is not None and result.found == {"channel_only": 2}
    found = session.scalars(sa.select(Difference).order_by(Difference.id)).all()
    assert [(d.kind.value, d.status.value, d.refund_no, d.channel_amount_fen)
            for d in found] == [("channel_only", "open", None, 1000),
                                ("channel_only", "open", None, 500)]
    assert len({d.key for d in found}) == 2
