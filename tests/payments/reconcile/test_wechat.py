"""The WeChat trade bill parser on bills shaped like WeChat's: gzip, backticks, summary lines,
refund rows, yuan amounts; anything that does not add up is refused."""

import gzip
import io
from datetime import UTC, datetime

import pytest

from payments.reconcile import wechat
from payments.reconcile.lines import BadStatement, Line

from .bills import wechat_bill, wechat_row

AT = datetime(2026, 12, 2, 15, 59, 58, tzinfo=UTC)  # 23:59:58 in Beijing


def parse(data: bytes) -> list[Line]:
    return list(wechat.parse(io.BytesIO(data)))


def test_payments_and_refunds_in_fen_with_beijing_times() -> None:
    pay, refund = parse(wechat_bill([
        wechat_row("DF1", 12345, AT),
        wechat_row("DF0", 5000, AT, refund_no="RF1", refund_fen=1230)]))
    assert pay == Line("payment", "DF1", "42000DF1", None, 12345, 74, AT, "SUCCESS")
    assert pay.occurred_at.utcoffset().total_seconds() == 8 * 3600  # Beijing wall clock kept
    assert refund.kind == "refund" and refund.refund_no == "RF1"
    assert (refund.amount_fen, refund.fee_fen, refund.status) == (1230, 7, "SUCCESS")


def test_a_description_with_a_quoted_comma_stays_one_value() -> None:
    data = gzip.decompress(wechat_bill([wechat_row("DF1", 100, AT)])).decode()
    data = data.replace("`电费  2026-11", '"`电费, 2026-11"')
    [line] = parse(gzip.compress(data.encode()))
    assert line.amount_fen == 100


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("`1,`1.00", "`2,`1.00"), "summary"),
    (lambda t: t.split("总交易单数")[0], "no summary"),
    (lambda t: t.replace("`CNY", "`USD"), "currency"),
    (lambda t: t.replace("`SUCCESS", "`REVOKED"), "unexpected trade state"),
    (lambda t: t.replace("`1.00,`0.00", "`1.001,`0.00", 1), "line 2"),
    (lambda t: t.replace("商户订单号", "订单号"), "missing columns"),
    (lambda t: t + "`extra\r\n", "after the summary"),
])
def test_a_bill_that_does_not_add_up_is_refused(change, message) -> None:
    text = gzip.decompress(wechat_bill([wechat_row("DF1", 100, AT)])).decode()
    with pytest.raises(BadStatement, match=message):
        parse(gzip.compress(change(text).encode()))


def test_not_gzip_and_empty_bill_are_refused() -> None:
    with pytest.raises(BadStatement, match="gzip"):
        parse(b"not gzip at all")
    with pytest.raises(BadStatement, match="missing columns"):
        parse(gzip.compress(b""))


def test_a_day_without_trades_is_a_summary_of_zero() -> None:
    assert parse(wechat_bill([])) == []


def test_a_quoted_value_may_span_lines_but_must_close() -> None:
    text = gzip.decompress(wechat_bill([wechat_row("DF1", 100, AT)])).decode()
    spanning = text.replace("`电费  2026-11", '"`电费\r\n2026-11"')
    [line] = parse(gzip.compress(spanning.encode()))
    assert line.order_no == "DF1"
    with pytest.raises(BadStatement, match="not closed"):
        parse(gzip.compress(text.replace("`电费  2026-11", '"`电费').encode()))


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("`JSAPI,", "`JSAPI,`extra,"), "values, header has"),
    (lambda t: t.replace("`1,`1.00", "`1,`1.0.0"), "summary line unreadable"),
])
def test_a_line_of_the_wrong_shape_is_refused(change, message) -> None:
    text = gzip.decompress(wechat_bill([wechat_row("DF1", 100, AT)])).decode()
    with pytest.raises(BadStatement, match=message):
        parse(gzip.compress(change(text).encode()))
