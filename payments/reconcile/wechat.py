"""WeChat Pay's ALL trade bill (交易账单), as downloaded: gzip of a UTF-8 CSV whose values start
with a backtick, detail lines, then a summary header (总交易单数, ...) and one summary line.
Amounts are yuan. Parsed as a stream: a million-line bill is never held in memory."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO
from zoneinfo import ZoneInfo

from payments.reconcile.lines import PAYMENT, REFUND, BadStatement, Line, signed_fen
from portal.kernel.money import MoneyFormatError

BEIJING = ZoneInfo("Asia/Shanghai")
NEEDED = ("交易时间", "微信订单号", "商户订单号", "交易状态", "货币种类", "应结订单金额",
          "商户退款单号", "退款金额", "退款状态", "手续费", "订单金额")


def _clean(row: list[str]) -> list[str]:
    return [cell.strip().removeprefix("`") for cell in row]


def parse(stream: BinaryIO) -> Iterator[Line]:
    """Lines of the bill; raises ``BadStatement`` (possibly after yielding lines: the caller
    keeps nothing then) when the summary is missing or disagrees with the detail lines."""
    try:
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream), encoding="utf-8-sig", newline="")
        yield from _parse(csv.reader(text))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise BadStatement(f"not a gzip UTF-8 bill: {exc}") from None


def _parse(reader: Iterator[list[str]]) -> Iterator[Line]:
    header = _clean(next(reader, []))
    col = {name: i for i, name in enumerate(header)}
    missing = [name for name in NEEDED if name not in col]
    if missing:
        raise BadStatement(f"not a trade bill: missing columns {missing}")
    (at, trade_no, order_no, state, currency, settle, refund_no, refunded, refund_state, fee,
     total) = (col[name] for name in NEEDED)
    count = settled = refund_sum = 0
    for row in reader:
        if not row or not any(row):
            continue
        if row[0].strip() == "总交易单数":
            summary = dict(zip(_clean(row), _clean(next(reader, [])), strict=False))
            got = (summary.get("总交易单数"), summary.get("应结订单总金额"),
                   summary.get("退款总金额"))
            try:
                expected = (str(count), signed_fen(got[1] or ""), signed_fen(got[2] or ""))
            except MoneyFormatError:
                raise BadStatement(f"summary line unreadable: {got}") from None
            if (got[0], expected[1], expected[2]) != (str(count), settled, refund_sum):
                raise BadStatement(f"summary {got} does not match the {count} detail lines "
                                   f"({settled} / {refund_sum} fen)")
            if any(any(cell.strip() for cell in rest) for rest in reader):
                raise BadStatement("lines after the summary")
            return
        if len(row) != len(header):
            raise BadStatement(f"line {count + 2}: {len(row)} values, header has {len(header)}")
        try:
            if row[currency].removeprefix("`") != "CNY":
                raise BadStatement(f"currency {row[currency]!r}")
            kind = row[state].removeprefix("`")
            settled += signed_fen(row[settle].removeprefix("`"))
            when = datetime.fromisoformat(row[at].removeprefix("`")).replace(tzinfo=BEIJING)
            if kind == "SUCCESS":
                line = Line(PAYMENT, row[order_no].removeprefix("`"),
                            row[trade_no].removeprefix("`"), None,
                            signed_fen(row[total].removeprefix("`")),
                            signed_fen(row[fee].removeprefix("`")), when, kind)
            elif kind == "REFUND":
                amount = signed_fen(row[refunded].removeprefix("`"))
                refund_sum += amount
                line = Line(REFUND, row[order_no].removeprefix("`"),
                            row[trade_no].removeprefix("`"),
                            row[refund_no].removeprefix("`"), amount,
                            -signed_fen(row[fee].removeprefix("`")), when,
                            row[refund_state].removeprefix("`"))
            else:
                raise BadStatement(f"line {count + 2}: unexpected trade state {kind!r}")
        except (ValueError, MoneyFormatError) as exc:
            raise BadStatement(f"line {count + 2}: {exc}") from None
        count += 1
        yield line
    raise BadStatement("the bill has no summary")
