"""WeChat Pay's ALL trade bill (交易账单), as downloaded: gzip of a UTF-8 CSV whose values start
with a backtick, detail lines, then a summary header (总交易单数, ...) and one summary line.
Amounts are yuan. Parsed as a stream: a million-line bill is never held in memory."""

from __future__ import annotations

import csv
import functools
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


# Amounts and times repeat across a day's lines: each distinct string is parsed once (the rule
# stays ``parse_yuan``'s; a malformed one raises every time, errors are not cached).
_fen = functools.lru_cache(maxsize=1 << 16)(signed_fen)


@functools.lru_cache(maxsize=1 << 17)
def _beijing(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def _clean(row: list[str]) -> list[str]:
    return [cell.strip().removeprefix("`") for cell in row]


def _rows(text: Iterator[str]) -> Iterator[list[str]]:
    """Rows with the backticks and spaces around values removed. A line whose every value
    starts with a backtick and that has no quote (WeChat's detail lines, nearly always) is split
    on commas; any other goes through the csv module, with the lines an open quote spans."""
    lines = iter(text)
    for line in lines:
        if '"' not in line and line[:1] == "`" and line.count("`") == line.count(",") + 1:
            yield line.rstrip("\r\n").replace("`", "").split(",")
            continue
        while line.count('"') % 2:
            more = next(lines, None)
            if more is None:
                raise BadStatement("a quoted value is not closed")
            line += more
        yield _clean(next(csv.reader([line]), []))


def parse(stream: BinaryIO) -> Iterator[Line]:
    """Lines of the bill; raises ``BadStatement`` (possibly after yielding lines: the caller
    keeps nothing then) when the summary is missing or disagrees with the detail lines."""
    try:
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=stream), encoding="utf-8-sig", newline="")
        yield from _parse(_rows(text))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise BadStatement(f"not a gzip UTF-8 bill: {exc}") from None


def _parse(reader: Iterator[list[str]]) -> Iterator[Line]:
    header = next(reader, [])
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
        if row[0] == "总交易单数":
            summary = dict(zip(row, next(reader, []), strict=False))
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
            if row[currency] != "CNY":
                raise BadStatement(f"currency {row[currency]!r}")
            kind = row[state]
            settled += _fen(row[settle])
            when = _beijing(row[at])
            if kind == "SUCCESS":
                line = Line(PAYMENT, row[order_no], row[trade_no], None, _fen(row[total]),
                            _fen(row[fee]), when, kind)
            elif kind == "REFUND":
                amount = _fen(row[refunded])
                refund_sum += amount
                line = Line(REFUND, row[order_no], row[trade_no], row[refund_no], amount,
                            -_fen(row[fee]), when, row[refund_state])
            else:
                raise BadStatement(f"line {count + 2}: unexpected trade state {kind!r}")
        except (ValueError, MoneyFormatError) as exc:
            raise BadStatement(f"line {count + 2}: {exc}") from None
        count += 1
        yield line
    raise BadStatement("the bill has no summary")
