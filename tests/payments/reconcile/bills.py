"""Statement files shaped like the channels' own, for the reconciliation tests."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import datetime
from zoneinfo import ZoneInfo

from portal.kernel.money import fen_to_yuan_str

BEIJING = ZoneInfo("Asia/Shanghai")
WECHAT_COLUMNS = ["交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号",
                  "商户订单号", "用户标识", "交易类型", "交易状态", "付款银行", "货币种类",
                  "应结订单金额", "代金券金额", "微信退款单号", "商户退款单号", "退款金额",
                  "充值券退款金额", "退款类型", "退款状态", "商品名称", "商户数据包", "手续费",
                  "费率", "订单金额", "申请退款金额", "费率备注"]


def wechat_row(order_no: str, amount_fen: int, at: datetime, *, refund_no: str | None = None,
               refund_fen: int = 0, trade_no: str | None = None) -> dict[str, str]:
    fee = (amount_fen * 6 + 500) // 1000
    row = {"交易时间": at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
           "公众账号ID": "wx8888888888888888", "商户号": "1900000109", "特约商户号": "0",
           "微信订单号": trade_no or f"42000{order_no[-10:]}", "商户订单号": order_no,
           "用户标识": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "交易类型": "JSAPI",
           "交易状态": "SUCCESS", "付款银行": "OTHERS", "货币种类": "CNY",
           "应结订单金额": fen_to_yuan_str(amount_fen), "代金券金额": "0.00",
           "商品名称": "电费, 2026-11", "手续费": fen_to_yuan_str(fee), "费率": "0.60%",
           "订单金额": fen_to_yuan_str(amount_fen)}
    if refund_no is not None:
        row.update({"交易状态": "REFUND", "应结订单金额": "0.00", "商户退款单号": refund_no,
                    "微信退款单号": f"50300{refund_no[-10:]}",
                    "退款金额": fen_to_yuan_str(refund_fen),
                    "申请退款金额": fen_to_yuan_str(refund_fen), "退款类型": "ORIGINAL",
                    "退款状态": "SUCCESS",
                    "手续费": fen_to_yuan_str(-((refund_fen * 6 + 500) // 1000))})
    return row


def wechat_bill(rows: list[dict[str, str]], *, summary_count: int | None = None) -> bytes:
    """The gzip of an ALL trade bill: header, backticked detail lines, summary header and line."""
    settled = sum(int(r["应结订单金额"].replace(".", "")) for r in rows)
    refunded = sum(int(r.get("退款金额", "0.00").replace(".", "")) for r in rows)
    out = [",".join(WECHAT_COLUMNS)]
    out += [",".join("`" + r.get(name, "").replace(",", " ") for name in WECHAT_COLUMNS)
            for r in rows]
    out.append("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
               "申请退款总金额")
    count = len(rows) if summary_count is None else summary_count
    out.append(",".join("`" + v for v in (str(count), fen_to_yuan_str(settled),
                                          fen_to_yuan_str(refunded), "0.00", "0.00",
                                          fen_to_yuan_str(settled), fen_to_yuan_str(refunded))))
    return gzip.compress(("\r\n".join(out) + "\r\n").encode("utf-8"), mtime=0)


ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
                 "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,"
                 "支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
                 "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")


def alipay_bill(rows: list[tuple[str, str, int, datetime, str]], *,
                pay_total: int | None = None) -> bytes:
    """A trade bill zip: ``rows`` are (trade no, order no, signed fen, finished at, refund no);
    a GBK detail CSV with # comment lines and footer totals, and a GBK summary CSV."""
    pays = [r for r in rows if r[2] > 0]
    refunds = [r for r in rows if r[2] < 0]
    body = []
    for trade_no, order_no, fen, at, refund_no in rows:
        when = at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        amount = fen_to_yuan_str(fen)
        fee = fen_to_yuan_str(-((abs(fen) * 6 + 500) // 1000) * (1 if fen > 0 else -1))
        body.append(f"{trade_no}\t,{order_no}\t,{'交易' if fen > 0 else '退款'},电费,{when},"
                    f"{when},,,,,159****5620,{amount},{amount},0.00,0.00,0.00,0.00,0.00,,0.00,"
                    f"0.00,{refund_no},{fee},0.00,")
    paid = sum(r[2] for r in pays) if pay_total is None else pay_total
    lines = ["#支付宝业务明细查询", "#账号：[20881234567890156]",
             "#起始日期：[2026年12月02日 00:00:00]   终止日期：[2026年12月03日 00:00:00]",
             "#-----------------------------------------业务明细列表----------------------------------------",
             ALIPAY_HEADER, *body,
             "#-----------------------------------------业务明细列表结束------------------------------------",
             f"#交易合计：{len(pays)}笔，商家实收共{fen_to_yuan_str(paid)}元，商家优惠共0.00元",
             f"#退款合计：{len(refunds)}笔，商家实收退款共"
             f"{fen_to_yuan_str(sum(r[2] for r in refunds))}元，商家优惠退款共0.00元",
             "#导出时间：[2026年12月03日 10:02:11]"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("20881234567890156_20261202_业务明细.csv",
                         "\r\n".join(lines).encode("gbk"))
        archive.writestr("20881234567890156_20261202_业务明细(汇总).csv",
                         "#支付宝业务汇总查询\r\n合计,,0,0,0.00".encode("gbk"))
    return buffer.getvalue()
