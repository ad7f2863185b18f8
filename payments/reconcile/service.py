"""Reconcile one channel's statement of one day against our orders and refunds. Flask-free.

``run_day``: keep the file (``<dir>/<channel>/<date>/<sha256><suffix>``) and its hash; the same
bytes as a version already matched change nothing; other bytes are a new version. The file is
parsed as a stream into ``recon_lines`` (COPY on PostgreSQL, batched INSERTs on SQLite) and
matched with set-based SQL (the same statements on both):

* a payment line without a local success (no order, or an order still open) is ``channel_only``
  (长款); an amount that differs is ``amount_mismatch``; a line for an order we closed, failed
  or sent to review is ``status_mismatch``. Refund lines likewise against our refunds by refund
  number (``status_mismatch``: we declined it, it failed, or it was never sent).
* a local success (paid that business day) or a succeeded refund (finished that day) that no
  statement of the channel lists is ``local_only`` (短款); it starts as ``recheck`` and is settled
  against the next day's statement (a cut-off difference clears itself there, else it opens).
* an older version's unresolved differences are ``superseded`` by the new version's.

Then ``channel_only`` payments of an open order are queried at the channel and, when paid,
applied through ``payments.service.apply_trade`` (补单), each in its own transaction with an
audit row. What remains is ``open`` on the staff worklist, where ``resolve`` records who, when
and why (also in the audit log).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from payments import service as payments
from payments.channels.base import ChannelError, PaymentChannel, StatementFile, TradeState
from payments.models import PaymentOrder, Refund
from payments.reconcile import alipay, stripe, wechat
from payments.reconcile.lines import PAYMENT, REFUND, Line
from payments.reconcile.models import (
    DIFFERENCE_MACHINE,
    Difference,
    DifferenceKind,
    DifferenceNote,
    DifferenceStatus,
    Statement,
    StatementLine,
)
from payments.states import OPEN, OrderStatus, RefundStatus
from portal.kernel import audit
from portal.kernel.clock import Clock
from portal.kernel.errors import Conflict, DomainError

PARSERS: dict[str, Callable[[BinaryIO], Iterator[Line]]] = {
    "wechat": wechat.parse, "alipay": alipay.parse, "stripe": stripe.parse}
SUFFIXES = {"wechat": ".csv.gz", "alipay": ".zip", "stripe": ".json"}
BATCH = 20_000
LINE_COLUMNS = ("statement_id", "line_no", "kind", "order_no", "channel_trade_no", "refund_no",
                "amount_fen", "fee_fen", "occurred_at", "status")

Progress = Callable[[int], None]  # called with the number of lines just loaded


class NoteRequired(DomainError):
    code = "recon_note_required"
    status = 400


@dataclass
class Result:
    statement: Statement
    new: bool  # False: these bytes were matched before, nothing changed
    found: Counter[str] = field(default_factory=Counter)  # differences of this version, by kind
    auto_resolved: int = 0


# --- the file ------------------------------------------------------------------------------

def keep(directory: Path, channel: str, day: date, source: bytes | Path | None,
         suffix: str) -> tuple[str | None, str, int]:
    """Copy the statement into the store, hashing as it goes: (path, sha256, size). No file
    (the channel had none) is the hash of no bytes and no path."""
    if source is None:
        return None, hashlib.sha256(b"").hexdigest(), 0
    folder = directory / channel / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=folder, delete=False) as out, _open(source) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    target = folder / f"{digest.hexdigest()}{suffix}"
    os.replace(out.name, target)
    return str(target), digest.hexdigest(), size


def _open(source: bytes | Path) -> IO[bytes]:
    import io

    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


# --- a day -----------------------------------------------------------------------------------

def run_day(session: Session, clock: Clock, channel_name: str, day: date,
            source: StatementFile | Path | None, *, directory: Path, zone: tzinfo,
            channel: PaymentChannel | None = None, progress: Progress | None = None) -> Result:
    """Keep, load and match one statement of ``day``; then settle cut-off rechecks and try
    补单 for channel-only payments (when ``channel`` is given). Commits."""
    content = source.content if isinstance(source, StatementFile) else source
    path, sha256, size = keep(directory, channel_name, day, content, SUFFIXES[channel_name])
    seen = session.scalar(sa.select(Statement).where(
        Statement.channel == channel_name, Statement.bill_date == day,
        Statement.sha256 == sha256, Statement.matched_at.is_not(None)))
    if seen is not None:  # ``keep`` rewrote the same bytes under the same name
        return Result(seen, new=False)
    version = (session.scalar(sa.select(sa.func.max(Statement.version)).where(
        Statement.channel == channel_name, Statement.bill_date == day)) or 0) + 1
    statement = Statement(channel=channel_name, bill_date=day, version=version, sha256=sha256,
                          path=path, size_bytes=size, fetched_at=clock.now())
    session.add(statement)
    session.flush()
    try:
        if path is not None:
            with open(path, "rb") as stream:
                _load(session, statement, PARSERS[channel_name](stream), progress)
        found = _match(session, clock, statement, zone)
    except BaseException:
        session.rollback()
        if path is not None:
            Path(path).unlink(missing_ok=True)
        raise
    statement.differences = sum(found.values())
    statement.matched_at = clock.now()
    session.commit()
    result = Result(statement, new=True, found=found)
    if channel is not None:
        result.auto_resolved = backfill(session, clock, channel, statement, zone)
    return result


def _load(session: Session, statement: Statement, lines: Iterable[Line],
          progress: Progress | None) -> None:
    totals = {PAYMENT: 0, REFUND: 0}
    count = 0
    connection = session.connection()
    copy = connection.dialect.name == "postgresql"

    def rows() -> Iterator[tuple[Any, ...]]:
        nonlocal count
        for line in lines:
            totals[line.kind] += line.amount_fen
            count += 1
            if progress is not None and count % BATCH == 0:
                progress(BATCH)
            yield (statement.id, count, *line)

    if copy:
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY recon_lines ({', '.join(LINE_COLUMNS)}) FROM STDIN") as out:
            chunk: list[str] = []
            for row in rows():
                chunk.append(_copy_text(row))
                if len(chunk) == BATCH // 10:
                    out.write("".join(chunk))
                    chunk = []
            out.write("".join(chunk))
    else:
        insert = sa.insert(StatementLine)
        batch: list[dict[str, Any]] = []
        for row in rows():
            batch.append(dict(zip(LINE_COLUMNS, row, strict=True)))
            if len(batch) == BATCH // 4:
                session.execute(insert, batch)
                batch = []
        if batch:
            session.execute(insert, batch)
    if progress is not None:
        progress(count % BATCH)
    statement.line_count, statement.payment_fen, statement.refund_fen = (
        count, totals[PAYMENT], totals[REFUND])


_timestamp = functools.lru_cache(maxsize=1 << 17)(datetime.isoformat)
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\r": "\\r", "\n": "\\n"}
_UNSAFE = re.compile("[\\\\\t\r\n]")
_NULL = "\\N"


def _copy_text(row: tuple[Any, ...]) -> str:
    """One line of COPY's text format: tab-separated, ``\\N`` for NULL, and the characters
    the format reserves escaped (only values that have one pay for it)."""
    sid, line_no, kind, order_no, trade_no, refund_no, amount, fee, at, status = row
    texts: tuple[str, ...] = (order_no, trade_no, refund_no or "", status)
    if _UNSAFE.search("".join(texts)):
        texts = tuple(_UNSAFE.sub(lambda m: _ESCAPES[m.group()], t) for t in texts)
    refund = _NULL if refund_no is None else texts[2]
    return (f"{sid}\t{line_no}\t{kind}\t{texts[0]}\t{texts[1]}\t{refund}\t{amount}\t{fee}\t"
            f"{_timestamp(at)}\t{texts[3]}\n")


def _window(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), zone)
    return start, datetime.combine(day + timedelta(days=1), time(), zone)


_L = sa.inspect(StatementLine).local_table
_S = sa.inspect(Statement).local_table
_O = sa.inspect(PaymentOrder).local_table
_R = sa.inspect(Refund).local_table
_D: sa.Table = Difference.__table__  # type: ignore[assignment]
_DIFF_COLUMNS = ("statement_id", "channel", "bill_date", "key", "kind", "status", "order_no",
                 "refund_no", "channel_trade_no", "channel_amount_fen", "local_amount_fen",
                 "channel_status", "local_status", "account_id", "created_at")
_MATCHED_REFUND = (RefundStatus.PENDING.value, RefundStatus.SUCCEEDED.value)


def _lit(value: Any, like: sa.ColumnElement[Any] | None = None) -> sa.ColumnElement[Any]:
    return sa.literal(value, like.type if like is not None else None)


def _match(session: Session, clock: Clock, statement: Statement, zone: tzinfo) -> Counter[str]:
    """Every difference of this version, as INSERT ... SELECT statements; then settle the
    previous day's rechecks and supersede older versions. Returns the differences by kind."""
    sid, name, day, now = statement.id, statement.channel, statement.bill_date, clock.now()
    start, end = _window(day, zone)
    common = (_lit(sid, _D.c.statement_id), _lit(name, _D.c.channel),
              _lit(day, _D.c.bill_date))
    mine = sa.and_(_L.c.statement_id == sid)
    open_ = [s.value for s in OPEN]

    # payment lines without a local success, or with a different amount or state
    order = _O.alias("o")
    pay_kind = sa.case(
        (sa.or_(order.c.id.is_(None), order.c.status.in_(open_)),
         DifferenceKind.CHANNEL_ONLY.value),
        (order.c.amount_fen != _L.c.amount_fen, DifferenceKind.AMOUNT_MISMATCH.value),
        else_=DifferenceKind.STATUS_MISMATCH.value)
    payments_ = (sa.select(*common, sa.literal("payment:") + _L.c.order_no, pay_kind,
                           _lit(DifferenceStatus.OPEN.value), _L.c.order_no, sa.null(),
                           _L.c.channel_trade_no, _L.c.amount_fen, order.c.amount_fen,
                           _L.c.status, order.c.status, order.c.account_id,
                           _lit(now, _D.c.created_at))
                 .select_from(_L.outerjoin(order, sa.and_(order.c.order_no == _L.c.order_no,
                                                          order.c.channel == name)))
                 .where(mine, _L.c.kind == PAYMENT,
                        sa.or_(order.c.id.is_(None),
                               order.c.status != OrderStatus.SUCCEEDED.value,
                               order.c.amount_fen != _L.c.amount_fen)))
    # refund lines against our refunds by refund number
    refund, of = _R.alias("r"), _O.alias("ro")
    refund_kind = sa.case(
        (refund.c.id.is_(None), DifferenceKind.CHANNEL_ONLY.value),
        (refund.c.amount_fen != _L.c.amount_fen, DifferenceKind.AMOUNT_MISMATCH.value),
        else_=DifferenceKind.STATUS_MISMATCH.value)
    # a refund made by hand at the channel carries none of our refund numbers: keyed by its
    # line instead (one difference each; "refund:" || NULL would be a NULL key)
    refund_key = sa.func.coalesce(sa.literal("refund:") + _L.c.refund_no,
                                  sa.literal("refund-line:") + sa.cast(_L.c.line_no, sa.String))
    refunds_ = (sa.select(*common, refund_key, refund_kind,
                          _lit(DifferenceStatus.OPEN.value), _L.c.order_no, _L.c.refund_no,
                          _L.c.channel_trade_no, _L.c.amount_fen, refund.c.amount_fen,
                          _L.c.status, refund.c.status, of.c.account_id,
                          _lit(now, _D.c.created_at))
                .select_from(_L.outerjoin(refund, refund.c.refund_no == _L.c.refund_no)
                             .outerjoin(of, of.c.id == refund.c.order_id))
                .where(mine, _L.c.kind == REFUND,
                       sa.or_(refund.c.id.is_(None), refund.c.amount_fen != _L.c.amount_fen,
                              refund.c.status.not_in(_MATCHED_REFUND))))
    # local successes of the day that no statement of the channel lists: this version, or the
    # day before's or after's (a cut-off order is listed there). Only the neighbours are read,
    # so the work stays a day's, however many days of lines are kept.
    listed = (sa.select(_L.c.order_no).join(_S, _S.c.id == _L.c.statement_id)
              .where(_S.c.channel == name,
                     sa.or_(_S.c.id == sid,
                            _S.c.bill_date.in_([day - timedelta(days=1),
                                                day + timedelta(days=1)]))))
    local_pay = (sa.select(*common, sa.literal("payment:") + _O.c.order_no,
                           _lit(DifferenceKind.LOCAL_ONLY.value),
                           _lit(DifferenceStatus.RECHECK.value), _O.c.order_no, sa.null(),
                           _O.c.channel_trade_no, sa.null(), _O.c.amount_fen, sa.null(),
                           _O.c.status, _O.c.account_id, _lit(now, _D.c.created_at))
                 .where(_O.c.channel == name, _O.c.status == OrderStatus.SUCCEEDED.value,
                        _O.c.paid_at >= _lit(start, _O.c.paid_at),
                        _O.c.paid_at < _lit(end, _O.c.paid_at),
                        ~sa.exists(listed.where(_L.c.kind == PAYMENT,
                                                _L.c.order_no == _O.c.order_no))))
    local_refund = (sa.select(*common, sa.literal("refund:") + _R.c.refund_no,
                              _lit(DifferenceKind.LOCAL_ONLY.value),
                              _lit(DifferenceStatus.RECHECK.value), _O.c.order_no, _R.c.refund_no,
                              _R.c.channel_refund_no, sa.null(), _R.c.amount_fen, sa.null(),
                              _R.c.status, _O.c.account_id, _lit(now, _D.c.created_at))
                    .join_from(_R, _O, _O.c.id == _R.c.order_id)
                    .where(_O.c.channel == name, _R.c.status == RefundStatus.SUCCEEDED.value,
                           _R.c.finished_at >= _lit(start, _R.c.finished_at),
                           _R.c.finished_at < _lit(end, _R.c.finished_at),
                           ~sa.exists(listed.where(_L.c.kind == REFUND,
                                                   _L.c.refund_no == _R.c.refund_no))))
    for select in (payments_, refunds_, local_pay, local_refund):
        session.execute(sa.insert(_D).from_select(_DIFF_COLUMNS, select))
    _settle_rechecks(session, clock, name, day - timedelta(days=1), statement)
    following = session.scalar(sa.select(Statement).where(
        Statement.channel == name, Statement.bill_date == day + timedelta(days=1),
        Statement.matched_at.is_not(None)).order_by(Statement.version.desc()).limit(1))
    if following is not None:  # run out of order: the next day is already here
        _settle_rechecks(session, clock, name, day, following)
    _move_all(session, (_D.c.channel == name, _D.c.bill_date == day, _D.c.statement_id != sid),
              (DifferenceStatus.OPEN, DifferenceStatus.RECHECK), DifferenceStatus.SUPERSEDED,
              resolution=f"superseded by version {statement.version}", resolved_at=now)
    return Counter(dict(session.execute(
        sa.select(_D.c.kind, sa.func.count()).where(_D.c.statement_id == sid)
        .group_by(_D.c.kind)).tuples().all()))


def _settle_rechecks(session: Session, clock: Clock, name: str, day: date,
                     following: Statement) -> None:
    """``day``'s local-only differences listed in ``following`` (the next day's statement)
    were cut-off differences: resolved. The others open for staff."""
    in_next = sa.exists(sa.select(_L.c.line_no).where(
        _L.c.statement_id == following.id,
        sa.or_(sa.and_(_D.c.refund_no.is_(None), _L.c.kind == PAYMENT,
                       _L.c.order_no == _D.c.order_no),
               sa.and_(_L.c.kind == REFUND, _L.c.refund_no == _D.c.refund_no))))
    where = (_D.c.channel == name, _D.c.bill_date == day)
    _move_all(session, (*where, in_next), (DifferenceStatus.RECHECK,),
              DifferenceStatus.AUTO_RESOLVED, resolved_at=clock.now(),
              resolution=f"cut-off: in the statement of {following.bill_date.isoformat()}")
    _move_all(session, where, (DifferenceStatus.RECHECK,), DifferenceStatus.OPEN)


def _move_all(session: Session, where: Iterable[sa.ColumnElement[bool]],
              sources: tuple[DifferenceStatus, ...], target: DifferenceStatus,
              **values: Any) -> None:
    """The state machine's move for every matching row at once (set-based)."""
    for source in sources:
        DIFFERENCE_MACHINE.check(source, target)
    session.execute(sa.update(_D).where(*where, _D.c.status.in_([s.value for s in sources]))
                    .values(status=target.value, **values))


# --- 补单 ------------------------------------------------------------------------------------

def backfill(session: Session, clock: Clock, channel: PaymentChannel, statement: Statement,
             zone: tzinfo) -> int:
    """Query the channel for each channel-only payment of an order we still have open and, when
    it says paid, apply the success through the normal path. One transaction each."""
    candidates = session.execute(
        sa.select(Difference.id, Difference.order_no, PaymentOrder.channel_ref)
        .join(PaymentOrder, PaymentOrder.order_no == Difference.order_no)
        .where(Difference.statement_id == statement.id,
               Difference.kind == DifferenceKind.CHANNEL_ONLY,
               Difference.status == DifferenceStatus.OPEN, Difference.refund_no.is_(None),
               PaymentOrder.channel == statement.channel, PaymentOrder.status.in_(OPEN))
    ).all()
    session.rollback()  # no transaction spans a call to the channel
    done = 0
    for diff_id, order_no, channel_ref in candidates:
        done += requery(session, clock, channel, diff_id, order_no, channel_ref, zone)
    return done


def requery(session: Session, clock: Clock, channel: PaymentChannel, diff_id: int,
            order_no: str, channel_ref: str | None, zone: tzinfo,
            staff_id: int | None = None) -> bool:
    """One 补单 attempt; True when the order was credited and the difference resolved."""
    try:
        trade = channel.query(order_no, channel_ref)
    except ChannelError:
        return False
    if trade.state not in (TradeState.SUCCEEDED, TradeState.REFUNDED):
        return False
    outcome = payments.apply_trade(session, clock, channel.name, trade, "reconcile", zone)
    if outcome != payments.Outcome.APPLIED:  # e.g. review (the amounts differ): staff decide
        session.commit()  # what apply_trade decided stands; the difference stays open
        return False
    now = clock.now()
    DIFFERENCE_MACHINE.move(session, Difference, diff_id, DifferenceStatus.OPEN,
                            DifferenceStatus.AUTO_RESOLVED, resolved_at=now,
                            resolved_by_id=staff_id,
                            resolution="补单: paid at the channel, applied from its query")
    order = session.scalars(sa.select(PaymentOrder).where(PaymentOrder.order_no == order_no)
                            .execution_options(populate_existing=True)).one()
    audit.record(session, clock, "reconcile.backfill", "recon_difference", diff_id,
                 staff_id=staff_id, account_id=order.account_id,
                 amount_fen=order.amount_fen,
                 details={"order_no": order_no, "channel": channel.name})
    session.commit()
    return True


# --- staff -------------------------------------------------------------------------------------

def add_note(session: Session, clock: Clock, staff_id: int, diff: Difference, body: str) -> None:
    body = body.strip()
    if not body:
        raise NoteRequired()
    session.add(DifferenceNote(difference_id=diff.id, staff_id=staff_id, body=body[:500],
                               created_at=clock.now()))
    audit.record(session, clock, "reconcile.note", "recon_difference", diff.id,
                 staff_id=staff_id, account_id=diff.account_id, details={"note": body[:500]})


def resolve(session: Session, clock: Clock, staff_id: int, diff: Difference, note: str) -> None:
    """A member of staff settles an open difference, saying why. Does not commit."""
    note = note.strip()
    if not note:
        raise NoteRequired()
    now = clock.now()
    if not DIFFERENCE_MACHINE.move(session, Difference, diff.id, DifferenceStatus.OPEN,
                                   DifferenceStatus.RESOLVED, resolved_by_id=staff_id,
                                   resolved_at=now, resolution=note[:500]):
        raise Conflict(f"difference {diff.id} is no longer open")
    session.add(DifferenceNote(difference_id=diff.id, staff_id=staff_id, body=note[:500],
                               created_at=now))
    audit.record(session, clock, "reconcile.resolve", "recon_difference", diff.id,
                 staff_id=staff_id, account_id=diff.account_id,
                 details={"kind": diff.kind.value, "key": diff.key, "note": note[:500],
                          "channel": diff.channel, "bill_date": diff.bill_date.isoformat()})

