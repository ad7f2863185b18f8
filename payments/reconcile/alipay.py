"""Alipay's trade bill (alipay.data.dataservice.bill.downloadurl.query, bill_type=trade): a zip
of GBK CSVs. The "业务明细" file has ``#`` comment lines around the table, refund rows (业务类型
退款) with negative amounts, and footer totals (``#交易合计：N笔，商家实收共X元…``,
``#退款合计：M笔，商家实收退款共-Y元…``) that must match the rows, so a truncated or misread
file is refused. A line carries the magnitude; ``kind`` gives the direction."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import BinaryIO, Final
from zoneinfo import ZoneInfo

from payments.reconcile.lines import PAYMENT, REFUND, BadStatement, Line, signed_fen

BEIJING = ZoneInfo("Asia/Shanghai")
DETAIL_START: Final = "业务明细列表"
DETAIL_END: Final = "业务明细列表结束"
KINDS: Final = {"交易": PAYMENT, "退款": REFUND}
_TOTAL_RE: Final = re.compile(r"#(交易|退款)合计：(\d+)笔，[^，]*?共(-?[0-9.]+)元")
COLUMNS: Final = ("支付宝交易号", "商户订单号", "业务类型", "完成时间", "商家实收（元）",
                  "退款批次号/请求号", "服务费（元）")


def _zip_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x800:  # the UTF-8 flag
        return info.filename
    # Alipay's names are GBK bytes without the flag, which zipfile decoded as cp437.
    return info.filename.encode("cp437").decode("gbk", errors="replace")


def parse(stream: BinaryIO) -> Iterator[Line]:
    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile:
        raise BadStatement("not a zip") from None
    with archive:
        for info in archive.infolist():
            name = _zip_name(info)
            if "汇总" in name or not name.endswith(".csv"):
                continue
            try:
                text = archive.read(info).decode("gbk")
            except UnicodeDecodeError as exc:
                raise BadStatement(f"{name} is not GBK: {exc}") from None
            if DETAIL_START in text:
                return _parse_detail(text)
    raise BadStatement("no 业务明细 file in the zip")


def _parse_detail(text: str) -> Iterator[Line]:
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines)
                     if line.startswith("#") and DETAIL_START in line and DETAIL_END not in line)
        end = next(i for i, line in enumerate(lines) if line.startswith("#") and DETAIL_END in line)
    except StopIteration:
        raise BadStatement("detail markers missing") from None
    table = [[cell.strip() for cell in row] for row in csv.reader(lines[start + 1:end])]
    try:
        header, body = table[0], [row for row in table[1:] if any(row)]
        col = {name: header.index(name) for name in COLUMNS}
        rows = [_line(row, col) for row in body]
        _check_totals(lines[end + 1:], rows)
    except (ValueError, IndexError) as exc:  # MoneyFormatError is a ValueError
        raise BadStatement(str(exc)) from None
    return iter(rows)


def _line(row: list[str], col: dict[str, int]) -> Line:
    kind = KINDS.get(row[col["业务类型"]])
    if kind is None:
        raise ValueError(f"unknown 业务类型 {row[col['业务类型']]!r}")
    occurred = datetime.fromisoformat(row[col["完成时间"]]).replace(tzinfo=BEIJING)
    amount = signed_fen(row[col["商家实收（元）"]])
    if (kind == REFUND) != (amount < 0):
        raise ValueError(f"{kind} row with amount {amount}")
    return Line(kind, row[col["商户订单号"]], row[col["支付宝交易号"]],
                (row[col["退款批次号/请求号"]] or None) if kind == REFUND else None,
                abs(amount), abs(signed_fen(row[col["服务费（元）"]] or "0")), occurred, "SUCCESS")


def _check_totals(footer: list[str], rows: list[Line]) -> None:
    totals = {}
    for text in footer:
        match = _TOTAL_RE.match(text.strip())
        if match:
            totals[KINDS[match.group(1)]] = (int(match.group(2)), abs(signed_fen(match.group(3))))
    for kind in (PAYMENT, REFUND):
        found = [r.amount_fen for r in rows if r.kind == kind]
        if totals.get(kind) != (len(found), sum(found)):
            raise ValueError(f"{kind} footer {totals.get(kind)} != rows {(len(found), sum(found))}")


def read(data: bytes) -> list[Line]:
    """Every line of a bill held in memory (tests, the sandbox)."""
    return list(parse(io.BytesIO(data)))
