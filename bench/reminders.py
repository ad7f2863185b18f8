"""Benchmark the daily collection jobs on PostgreSQL: late-fee accrual plus the reminder sweep,
against plain set-based SQL writing the same rows.

    .venv/bin/python bench/reminders.py --accounts 100000

In a scratch schema of ``DIANFEI_TEST_PG_URL`` (default the test database), dropped afterwards:
N accounts (10% business), one issued bill each for 2026-11 (issued 2026-11-30, due 2026-12-25,
50..649 yuan) with its ledger charge; 95% of them paid in full. "Today" is 2027-01-02 10:00 in
Asia/Shanghai: 8 days overdue, so the unpaid 5% (every 20th account, residential) each get a
late fee and a ``reminder_overdue``
outbox row.

The run: ``portal.bills.late_fees.accrue`` (one query selects the overdue bills; the billing
engine's ``late_fee`` in Python; entries in batches of 1,000) and ``notifications.policy.sweep``
(one INSERT ... SELECT ... ON CONFLICT DO NOTHING into the outbox per kind of step), in one
transaction: ``run_seconds``.

The baseline, run first (both after reading the two tables once, so both find them cached), in
one transaction: the same selection and the same rows written by two plain
INSERT ... SELECT statements into twins of ``ledger_entries`` and ``outbox_messages`` (``LIKE ...
INCLUDING ALL`` plus the ledger's foreign keys), the fee computed in SQL (days x daily rate x
arrears, rounded half up, at least 1 yuan; one rate per class, right for this data):
``sql_seconds``. Both write the same number of rows (checked) and the same fee total (checked).

Prints seconds, rows and, last, ``ratio_to_sql`` (run_seconds / sql_seconds). Target for
N = 1,000,000: at most 5.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, too

from bench.scratch import scratch_schema
from notifications import policy
from notifications.config import ReminderPolicy
from portal.bills import late_fees
from portal.kernel.clock import FrozenClock

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 1, 2, 10, 0, tzinfo=ZONE).astimezone(UTC)
TODAY = date(2027, 1, 2)
DUE = date(2026, 12, 25)
ISSUED = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def _build(conn: sa.Connection, accounts: int) -> None:
    conn.execute(sa.text("INSERT INTO districts (id, code, name, timezone) "
                         "VALUES (1, 'bench', 'bench', 'Asia/Shanghai')"))
    conn.execute(sa.text("""
        INSERT INTO electricity_accounts (id, account_no, holder_name, address, district_id,
            customer_class, tariff_code, late_fee_waived, created_at)
        SELECT i, lpad(i::text, 10, '0'), 'bench', 'bench', 1,
               CASE WHEN i % 10 = 9 THEN 'business' ELSE 'residential' END,
               'beijing-residential', false, :now
        FROM generate_series(1, :n) AS i"""), {"n": accounts, "now": ISSUED})
    conn.execute(sa.text("""
        INSERT INTO bills (id, account_id, period, version, period_start, period_end, kwh,
            tariff_code, total_fen, status, due_date, issued_at, created_at)
        SELECT i, i, '2026-11', 1, DATE '2026-11-01', DATE '2026-11-30', 300,
               'beijing-residential', 5000 + (i::bigint * 7919) % 60000, 'issued', :due,
               :issued, :issued
        FROM generate_series(1, :n) AS i"""), {"n": accounts, "due": DUE, "issued": ISSUED})
    conn.execute(sa.text(r"""
        INSERT INTO ledger_entries (account_id, bill_id, kind, amount_fen, ref, effective_on,
                                    created_at)
        SELECT id, id, 'charge', total_fen, 'bill:' || id || '\:charge', due_date, :issued
        FROM bills"""), {"issued": ISSUED})
    conn.execute(sa.text("""
        INSERT INTO ledger_entries (account_id, bill_id, kind, amount_fen, ref, effective_on,
                                    created_at)
        SELECT id, id, 'payment', -total_fen, 'pay:' || id, DATE '2026-12-20', :issued
        FROM bills WHERE id % 20 <> 0"""), {"issued": ISSUED})
    for table in ("districts", "electricity_accounts", "bills"):
        conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                             f"(SELECT max(id) FROM {table}))"))
    # only our tables: a database-wide ANALYZE waits on every other session's locks
    conn.execute(sa.text("ANALYZE districts, electricity_accounts, bills, ledger_entries"))


def _make_twins(conn: sa.Connection) -> None:
    for table in ("ledger_entries", "outbox_messages"):
        conn.execute(sa.text(f"CREATE TABLE {table}_twin (LIKE {table} INCLUDING ALL)"))
    conn.execute(sa.text("ALTER TABLE ledger_entries_twin ADD FOREIGN KEY (account_id) "
                         "REFERENCES electricity_accounts (id)"))
    conn.execute(sa.text("ALTER TABLE ledger_entries_twin ADD FOREIGN KEY (bill_id) "
                         "REFERENCES bills (id)"))


BASELINE = r"""
    CREATE TEMP TABLE due ON COMMIT DROP AS
    SELECT b.id, b.account_id, a.customer_class,
           LEAST(o.principal, b.total_fen) AS arrears, o.posted
    FROM bills b
    JOIN (SELECT l.bill_id,
                 sum(CASE WHEN l.kind = 'late_fee' THEN 0 ELSE l.amount_fen END) AS principal,
                 sum(CASE WHEN l.kind = 'late_fee' THEN l.amount_fen ELSE 0 END) AS posted
          FROM ledger_entries l JOIN bills b2 ON b2.id = l.bill_id
          WHERE b2.status = 'issued' AND b2.due_date < :today
          GROUP BY l.bill_id) o ON o.bill_id = b.id
    JOIN electricity_accounts a ON a.id = b.account_id
    WHERE NOT a.late_fee_waived AND LEAST(o.principal, b.total_fen) > 0;
    INSERT INTO ledger_entries_twin (account_id, bill_id, kind, amount_fen, ref, memo,
                                     effective_on, created_at)
    SELECT account_id, id, 'late_fee',
           GREATEST(round(arrears * :days * CASE WHEN customer_class = 'residential'
                                                THEN 0.001 ELSE 0.002 END), 100) - posted,
           'bill:' || id || '\:late_fee\:' || :today, 'late fee', :today, :now
    FROM due;
    INSERT INTO outbox_messages_twin (topic, payload, dedup_key, status, attempts, created_at,
                                      available_at)
    SELECT 'notify', json_build_object('customer_id', NULL, 'account_id', b.account_id,
                                       'event', 'reminder_overdue', 'bill_id', b.id,
                                       'params', json_build_object()),
           'notify\:reminder_overdue\:bill\:' || b.id, 'pending', 0, :now, :now
    FROM bills b
    JOIN (SELECT bill_id, sum(amount_fen) AS owed FROM ledger_entries
          WHERE bill_id IN (SELECT id FROM bills WHERE status = 'issued'
                            AND due_date BETWEEN :first AND :last)
          GROUP BY bill_id) o ON o.bill_id = b.id
    WHERE o.owed > 0 AND b.status = 'issued' AND b.due_date BETWEEN :first AND :last;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    with scratch_schema("bench_reminders") as (_, _, engine):
        began = time.perf_counter()
        with engine.begin() as conn:
            _build(conn, args.accounts)
            _make_twins(conn)
        print(f"accounts={args.accounts} overdue={args.accounts // 20} "
              f"build_seconds={time.perf_counter() - began:.1f}")
        with engine.connect() as conn:  # both start with the tables in the cache
            conn.execute(sa.text("SELECT count(*) FROM ledger_entries"))
            conn.execute(sa.text("SELECT count(*) FROM bills"))
        clock, reminders = FrozenClock(NOW), ReminderPolicy()
        (event, first, last), = [w for w in policy.step_windows(reminders, TODAY)
                                 if w[1] <= DUE <= w[2]]
        assert event == "reminder_overdue"
        began = time.perf_counter()
        with engine.begin() as conn:
            for statement in filter(str.strip, BASELINE.split(";")):
                conn.execute(sa.text(statement), {
                    "today": TODAY, "now": NOW, "days": (TODAY - DUE).days, "first": first,
                    "last": last})
        sql_seconds = time.perf_counter() - began
        load = os.getloadavg()[0]
        began = time.perf_counter()
        with Session(engine) as session:
            report = late_fees.accrue(session, clock, TODAY)
            fees_done = time.perf_counter()
            queued = policy.sweep(session, clock, reminders, ZONE)
            session.commit()
        run_seconds = time.perf_counter() - began
        print(f"run_seconds={run_seconds:.2f} late_fee_seconds={fees_done - began:.2f} "
              f"sweep_seconds={run_seconds - (fees_done - began):.2f} "
              f"late_fees={report.posted} late_fee_fen={report.fen} reminders={queued}")
        with engine.connect() as conn:
            fees, fen = conn.execute(sa.text(
                "SELECT count(*), sum(amount_fen) FROM ledger_entries_twin")).one()
            rows = conn.scalar(sa.text("SELECT count(*) FROM outbox_messages_twin"))
        assert (fees, int(fen or 0), rows) == (report.posted, report.fen, queued), \
            (fees, fen, rows, report)
        print(f"sql_seconds={sql_seconds:.2f} (the same {fees} late fees and {rows} outbox rows "
              f"by INSERT ... SELECT)")
        print(f"load_average_1min={load:.2f} cpus={os.cpu_count()}")
        print(f"ratio_to_sql={run_seconds / sql_seconds:.2f}")


if __name__ == "__main__":
    main()
