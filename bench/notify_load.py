"""Load on the WeChat notify endpoint compared with a hello-world endpoint, on PostgreSQL.

    .venv/bin/python bench/notify_load.py [--requests 2000] [--clients 8] [--workers 2 --threads 4]

Builds a private schema in the PostgreSQL database (DIANFEI_BENCH_PG_URL if set, else
``bench.scratch.PG_URL``: DIANFEI_TEST_PG_URL, default the test database), migrates it, adds one
household per request with an issued bill and a pending WeChat order paying it, then serves
``wsgi:app`` under gunicorn on loopback (one server, one configuration, the Procfile's workers and
threads) with WeChat Pay enabled against generated sandbox keys. It measures:

* ``GET /healthz`` (hello world), then
* ``POST /notify/wechat`` with valid, distinct, signed and encrypted TRANSACTION.SUCCESS
  notifications, one per order (each verifies, records the event, moves the order, credits the
  bill in the ledger, enqueues the posting message and commits before the 204),

each with a fixed number of concurrent keep-alive clients, and prints requests, errors, rps, p50
and p99 for each, with the CPU per request of the gunicorn workers (app_cpu_ms) and of the run's
PostgreSQL backends (db_cpu_ms) and the load average around the runs (the machine is shared:
rps moves with others' load, CPU per request much less), checks every order was credited once,
and prints LAST
``ratio_to_hello=<notify rps / hello rps>``. Targets: ratio >= 0.25 and notify p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scratch  # noqa: E402
from payments.channels.base import Scene  # noqa: E402
from payments.models import PaymentOrder  # noqa: E402
from payments.sandbox.wechat import WechatSandboxKeys, generate_keys, signed_notification  # noqa: E402
from payments.service import create_order  # noqa: E402
from payments.states import OrderStatus  # noqa: E402
from portal.accounts.models import CustomerClass, District, ElectricityAccount  # noqa: E402
from portal.app import create_app  # noqa: E402
from portal.bills.models import Bill, BillLine, LineKind  # noqa: E402
from portal.bills.service import issue  # noqa: E402
from portal.extensions import db  # noqa: E402
from portal.kernel.clock import SystemClock  # noqa: E402
from portal.settings import Settings  # noqa: E402

PG_URL = os.environ.get("DIANFEI_BENCH_PG_URL", scratch.PG_URL)
SECRET = "bench-secret-key-that-is-long-enough-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(url: str, keys: WechatSandboxKeys, key_file: Path, port: int) -> dict[str, str]:
    return {
        "DIANFEI_ENV": "development",
        "DIANFEI_DATABASE_URL": url,
        "DIANFEI_SECRET_KEY": SECRET,
        "DIANFEI_BROKER_URL": "memory://",
        "DIANFEI_RATELIMIT_STORAGE_URL": "memory://",
        "DIANFEI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DIANFEI_WECHATPAY__MCHID": keys.mchid,
        "DIANFEI_WECHATPAY__APPID": keys.appid,
        "DIANFEI_WECHATPAY__MERCHANT_SERIAL_NO": keys.merchant_serial_no,
        "DIANFEI_WECHATPAY__PRIVATE_KEY_PATH": str(key_file),
        "DIANFEI_WECHATPAY__APIV3_KEY": keys.apiv3_key,
        "DIANFEI_WECHATPAY__PUBLIC_KEY_PEM": keys.platform_public_key_pem,
        "DIANFEI_WECHATPAY__PUBLIC_KEY_ID": keys.public_key_id,
        # never called while notifications are handled; a closed loopback port
        "DIANFEI_WECHATPAY__GATEWAY_URL": "http://127.0.0.1:9",
        "DIANFEI_WECHATPAY__SANDBOX": "true",
    }


def prepare(url: str, count: int) -> list[tuple[str, int]]:
    """``count`` households, each with one issued bill and a pending WeChat order
    paying it (the everyday case: one notification per household, no two on one account);
    (order_no, amount) each."""
    settings = Settings(env="test", database_url=url, secret_key=SECRET,  # type: ignore[arg-type]
                        broker_url="memory://", ratelimit_storage_url="memory://")
    app = create_app(settings)
    clock = SystemClock()
    today = clock.now().date()
    with app.app_context():
        session = db.session
        district = District(code="bench", name="压测供电所")
        session.add(district)
        orders = []
        for n in range(count):
            account = ElectricityAccount(
                account_no=f"88{n:08d}", holder_name="压测户", address="压测路1号",
                district=district, customer_class=CustomerClass.RESIDENTIAL,
                tariff_code="beijing-residential", created_at=clock.now())
            session.add(account)
            session.flush()
            amount = 5000 + n
            bill = Bill(account_id=account.id, period="2026-11", version=1,
                        period_start=date(2026, 11, 1), period_end=date(2026, 11, 30),
                        kwh=Decimal(100), tariff_code=account.tariff_code, total_fen=amount,
                        due_date=today + timedelta(days=20), created_at=clock.now(),
                        lines=[BillLine(seq=1, kind=LineKind.ENERGY, tier=1, kwh=Decimal(100),
                                        unit_price=Decimal("0.5"), amount_fen=amount,
                                        description="电费")])
            session.add(bill)
            session.flush()
            issue(session, clock, bill)
            order = create_order(
                session, clock, account_id=account.id, customer_id=None, channel="wechat",
                scene=Scene.DESKTOP, bill_ids=None, lifetime=timedelta(minutes=30),
                first_query_after=timedelta(minutes=5),
            )
            orders.append((order.order_no, order.amount_fen))
            if n % 200 == 199:
                session.commit()
        session.execute(sa.update(PaymentOrder).values(status=OrderStatus.PENDING))
        session.commit()
        # Statistics, as a live database has them (autovacuum keeps them): without them the
        # planner takes the freshly loaded tables for empty and scans them whole.
        with db.engine.begin() as conn:  # kept only if committed
            conn.execute(sa.text("ANALYZE " + ", ".join(db.metadata.tables)))
        db.engine.dispose()
    return orders


def credited(url: str, order_nos: Sequence[str]) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        done = conn.scalar(
            sa.select(sa.func.count()).select_from(PaymentOrder)
            .where(PaymentOrder.order_no.in_(order_nos))
            .where(PaymentOrder.status == OrderStatus.SUCCEEDED))
    engine.dispose()
    return int(done or 0)


Request = tuple[str, str, bytes, dict[str, str]]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by the gunicorn workers and by this run's PostgreSQL backends (found by
    ``application_name``), so the figures can be compared on a machine others are loading too:
    rps and latency depend on that load, CPU per request much less."""

    def __init__(self, server: subprocess.Popen[bytes], admin: sa.Engine, app_name: str) -> None:
        self.server, self.admin, self.app_name = server, admin, app_name

    def _pids(self) -> tuple[list[int], list[int]]:
        children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children")
        workers = [int(p) for p in children.read_text().split()] + [self.server.pid]
        with self.admin.connect() as conn:
            backends = list(conn.scalars(sa.text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": self.app_name}))
        return workers, backends

    def sample(self) -> tuple[float, float]:
        workers, backends = self._pids()
        return (sum(map(_cpu_seconds, workers)), sum(map(_cpu_seconds, backends)))


def run(port: int, requests: Sequence[Request], clients: int) -> tuple[float, list[float], int]:
    """Send the requests with ``clients`` keep-alive connections; (seconds, latencies, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    next_index = iter(range(len(requests)))
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        failed = 0
        barrier.wait()
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            method, path, body, headers = requests[index]
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = 200 <= response.status < 300
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                ok = False
            mine.append(time.perf_counter() - started)
            failed += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, errors[0]


def measure(name: str, port: int, requests: Sequence[Request], clients: int,
            meter: CpuMeter) -> float:
    """Run the requests, print the figures; the rps."""
    app_before, db_before = meter.sample()
    seconds, latencies, errors = run(port, requests, clients)
    app_after, db_after = meter.sample()  # backends stay (pooled), so both samples see them
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    rps = len(latencies) / seconds
    count = len(latencies)
    print(f"{name}: requests={count} errors={errors} rps={rps:.1f} "
          f"p50_ms={cuts[49] * 1000:.1f} p99_ms={cuts[98] * 1000:.1f} "
          f"app_cpu_ms={(app_after - app_before) * 1000 / count:.2f} "
          f"db_cpu_ms={(db_after - db_before) * 1000 / count:.2f}")
    return rps


def wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited with {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer /healthz within 60 s")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint")
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    warmup = 50

    with scratch.scratch_schema("dianfei_bench", PG_URL) as (schema, url, engine):
        app_name = schema  # tags the server's connections for the CPU meter
        server: subprocess.Popen[bytes] | None = None
        try:
            print(f"preparing {args.requests + warmup} orders in schema {schema} ...",
                  file=sys.stderr)
            orders = prepare(url, args.requests + warmup)
            keys = generate_keys()
            notifications: list[Request] = []
            for order_no, amount in orders:
                headers, body = signed_notification(keys, out_trade_no=order_no, amount_fen=amount)
                notifications.append(("POST", "/notify/wechat", body, headers))
            hello: list[Request] = [("GET", "/healthz", b"", {})] * args.requests

            port = free_port()
            with tempfile.TemporaryDirectory() as tmp:
                key_file = Path(tmp) / "merchant.pem"
                key_file.write_text(keys.merchant_private_key_pem)
                server = subprocess.Popen(
                    [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                     "--workers", str(args.workers), "--threads", str(args.threads),
                     "--log-level", "warning", "wsgi:app"],
                    cwd=ROOT, env={**os.environ, **environment(
                        f"{url}&application_name={app_name}", keys, key_file, port)},
                )
                wait_ready(port, server)
                print(f"gunicorn: {args.workers} workers x {args.threads} threads; "
                      f"{args.clients} clients; PostgreSQL", file=sys.stderr)
                run(port, hello[:warmup], args.clients)
                run(port, notifications[:warmup], args.clients)
                meter = CpuMeter(server, engine, app_name)
                print(f"load average before: {load_average()}")
                hello_rps = measure("hello", port, hello, args.clients, meter)
                notify_rps = measure("notify_wechat", port, notifications[warmup:], args.clients,
                                     meter)
                print(f"load average after: {load_average()}")
            done = credited(url, [no for no, _ in orders])
            print(f"credited={done}/{len(orders)} orders")
            print(f"ratio_to_hello={notify_rps / hello_rps:.3f}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
