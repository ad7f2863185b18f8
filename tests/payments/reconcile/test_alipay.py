"""The Alipay trade bill parser: a zip of GBK CSVs with # comment lines, negative refund rows,
and footer totals that must match."""

import io
import zipfile
from datetime import UTC, datetime

import pytest

from payments.reconcile import alipay
from payments.reconcile.lines import BadStatement

from .bills import alipay_bill

AT = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)


def test_payments_and_negative_refunds_become_magnitudes_in_fen() -> None:
    pay, refund = alipay.read(alipay_bill([("2026120222001", "DF1", 12345, AT, ""),
                                           ("2026120222002", "DF2", -500, AT, "RF9")]))
    assert (pay.kind, pay.order_no, pay.channel_trade_no, pay.amount_fen, pay.fee_fen) == (
        "payment", "DF1", "2026120222001", 12345, 74)
    assert (refund.kind, refund.refund_no, refund.amount_fen, refund.fee_fen) == (
        "refund", "RF9", 500, 3)
    assert pay.occurred_at == AT


def test_footer_totals_must_match_and_the_file_must_be_a_gbk_zip() -> None:
    with pytest.raises(BadStatement, match="footer"):
        alipay.read(alipay_bill([("T1", "DF1", 100, AT, "")], pay_total=200))
    with pytest.raises(BadStatement, match="not a zip"):
        alipay.read(b"PK? no")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x_业务明细.csv", "业务明细列表 \xff".encode("utf-16"))
    with pytest.raises(BadStatement, match="GBK"):
        alipay.read(buffer.getvalue())
    with zipfile.ZipFile(buffer := io.BytesIO(), "w") as archive:
        archive.writestr("readme.txt", b"")
    with pytest.raises(BadStatement, match="no 业务明细"):
        alipay.read(buffer.getvalue())


def test_an_empty_day_has_no_lines() -> None:
    assert alipay.read(alipay_bill([])) == []
