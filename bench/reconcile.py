"""Benchmark reconciliation of a WeChat trade bill on PostgreSQL against COPY + one join.

    .venv/bin/python bench/reconcile.py --lines 100000

In a scratch schema of ``DIANFEI_TEST_PG_URL`` (default the test database), dropped afterwards:
N succeeded WeChat orders of one day (generated on the server), and a gzip ALL trade bill of N
detail lines in WeChat's format (backticks, yuan, summary lines) written to a temporary file,
with 0.1% seeded differences of every kind (at least one each): ``local_only`` (orders the bill
lacks), ``channel_only`` (lines for orders we do not have), ``amount_mismatch`` (one fen more),
``status_mismatch`` (orders we closed).

Timed: ``payments.reconcile.service.run_day`` on the file, as ``flask reconcile --file`` runs
it: keep the file (copy + SHA-256), stream-parse it, COPY the lines, match with SQL, commit.

Baseline, in the same run: the same file's detail rows COPYed as CSV (decompressed, header and
summary lines skipped) into a 27-column text table, then one full outer join of those rows with
the orders counting rows missing on either side or with another amount. The lines are not
parsed in Python, nor kept, nor checked against the summary.

Prints seconds, lines/s, peak RSS (this process, after the run), the differences found by kind
(checked to be exactly the seeded ones) and, last, ``ratio_to_baseline``. The target for N =
1,000,000 is a ratio of at most 3, at most 500 MB of RSS, every seeded difference found and
nothing else.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too

from bench.scratch import own_tables, scratch_schema
from payments.reconcile import service
from portal.kernel.clock import FrozenClock
from portal.kernel.money import fen_to_yuan_str

DAY = date(2026, 12, 2)
ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 3, 2, 30, tzinfo=UTC)
COLUMNS = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
           "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
           "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,"
           "费率备注")


def order_no(i: int) -> str:
    return f"DF{i:012d}"


def amount(i: int) -> int:
    return 100 + (i * 7919) % 50_000


def _build(conn: sa.Connection, n: int, k: int) -> None:
    """N orders paid during DAY (Beijing); 1..k local-only; 2k+1..3k closed."""
    conn.execute(sa.text("INSERT INTO districts (id, code, name, timezone) "
                         "VALUES (1, 'bench', 'bench', 'Asia/Shanghai')"))
    conn.execute(sa.text(
        "INSERT INTO electricity_accounts (id, account_no, holder_name, address, district_id, "
        "customer_class, tariff_code, late_fee_waived, created_at) VALUES "
        "(1, '0000000001', 'bench', 'bench', 1, 'residential', 'beijing-residential', false, "
        ":now)"), {"now": NOW})
    conn.execute(sa.text("""
        INSERT INTO payment_orders (order_no, account_id, channel, scene, amount_fen, currency,
            status, channel_trade_no, expires_at, paid_at, query_attempts, created_at,
            updated_at)
        SELECT 'DF' || lpad(i::text, 12, '0'), 1, 'wechat', 'desktop',
               100 + (i::bigint * 7919) % 50000, 'CNY',
               CASE WHEN i > 2 * :k AND i <= 3 * :k THEN 'closed' ELSE 'succeeded' END,
               '42' || lpad(i::text, 26, '0'), :start + interval '1 hour',
               CASE WHEN i > 2 * :k AND i <= 3 * :k THEN NULL
                    ELSE :start + make_interval(secs => i % 86400) END, 0, :start, :start
        FROM generate_series(1, :n) AS i"""),
        {"n": n, "k": k, "start": datetime(2026, 12, 2, tzinfo=ZONE)})
    conn.execute(sa.text("ANALYZE " + own_tables(conn)))


def _write_bill(path: Path, n: int, k: int) -> None:
    """Lines for orders k+1..n (amount +1 fen for k+1..2k), plus k lines of unknown orders."""
    settled = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1, newline="") as out:
        out.write(COLUMNS + "\r\n")
        for i in [*range(k + 1, n + 1), *range(n + 1, n + k + 1)]:
            fen = amount(i) + (1 if k < i <= 2 * k else 0)
            settled += fen
            at = datetime.fromtimestamp(datetime(2026, 12, 2, tzinfo=ZONE).timestamp()
                                        + i % 86400, ZONE)
            yuan = fen_to_yuan_str(fen)
            out.write(f"`{at:%Y-%m-%d %H:%M:%S},`wx8888888888888888,`1900000109,`0,`,"
                      f"`42{i:026d},`{order_no(i)},`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`JSAPI,`SUCCESS,"
                      f"`OTHERS,`CNY,`{yuan},`0.00,`,`,`0.00,`0.00,`,`,`电费,`,"
                      f"`{fen_to_yuan_str((fen * 6 + 500) // 1000)},`0.60%,`{yuan},`0.00,`\r\n")
        out.write("总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
                  "申请退款总金额\r\n")
        out.write(f"`{n},`{fen_to_yuan_str(settled)},`0.00,`0.00,`0.00,"
                  f"`{fen_to_yuan_str(settled)},`0.00\r\n")


def _baseline(engine: sa.Engine, path: Path) -> tuple[float, int]:
    """COPY the detail rows as CSV into a text table, then one full outer join."""
    began = time.perf_counter()
    with engine.begin() as conn:
        names = ", ".join(f"c{i} text" for i in range(27))
        conn.execute(sa.text(f"CREATE TABLE baseline_lines ({names})"))
        raw: Any = conn.connection.driver_connection
        with raw.cursor().copy("COPY baseline_lines FROM STDIN (FORMAT csv)") as copy, \
                gzip.open(path, "rb") as source:
            source.readline()  # the header
            for line in source:
                if line.startswith("总交易单数".encode()):
                    break
                copy.write(line)
        differences = conn.scalar(sa.text("""
            SELECT count(*) FROM baseline_lines b
            FULL OUTER JOIN (SELECT order_no, amount_fen FROM payment_orders
                             WHERE channel = 'wechat' AND status = 'succeeded') o
              ON o.order_no = substr(b.c6, 2)
            WHERE b.c6 IS NULL OR o.order_no IS NULL
               OR o.amount_fen <> (replace(substr(b.c24, 2), '.', ''))::bigint"""))
    return time.perf_counter() - began, int(differences or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    n, k = args.lines, max(1, args.lines // 1000)

    with (scratch_schema("bench_reconcile") as (_, _, engine),
          tempfile.TemporaryDirectory() as tmp):
        began = time.perf_counter()
        with engine.begin() as conn:
            _build(conn, n, k)
        bill = Path(tmp) / "bill.csv.gz"
        _write_bill(bill, n, k)
        built = time.perf_counter() - began
        print(f"lines={n} orders={n} seeded_per_kind={k} "
              f"bill_mb={bill.stat().st_size / 1e6:.1f} build_seconds={built:.1f}")

        began = time.perf_counter()
        with Session(engine) as session:
            result = service.run_day(session, FrozenClock(NOW), "wechat", DAY, bill,
                                     directory=Path(tmp) / "kept", zone=ZONE)
        seconds = time.perf_counter() - began
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        found = dict(sorted(result.found.items()))
        print(f"reconcile_seconds={seconds:.2f} lines_per_second={n / seconds:.0f}")
        print("differences_found: " + " ".join(f"{kind}={c}" for kind, c in found.items()))
        expected = {"amount_mismatch": k, "channel_only": k, "local_only": k,
                    "status_mismatch": k}
        print(f"every_seeded_difference_found_and_nothing_else={found == expected}")

        baseline_seconds, joined = _baseline(engine, bill)
        print(f"baseline_seconds={baseline_seconds:.2f} (COPY of the same rows + one full "
              f"outer join; {joined} rows differ)")
        print(f"peak_rss_mb={peak_mb:.0f}")
        print(f"ratio_to_baseline={seconds / baseline_seconds:.2f}")


if __name__ == "__main__":
    main()
