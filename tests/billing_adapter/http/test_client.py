"""The HTTP adapter against a billing server on loopback: the shared contract, then the transport
policy (timeouts, retries on 5xx and timeouts only, idempotency keys, a clear error at the end)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_adapter.base import BillingRejected, BillingUnavailable
from billing_adapter.http.client import HttpBillingSystem
from portal.kernel.clock import FrozenClock
from tests.billing_adapter.contract import (
    ACCOUNT,
    BillingContract,
    Harness,
    adjustment,
    posting,
    reading,
    seed_world,
)
from tests.billing_adapter.fake_server import TOKEN, FakeBillingServer, running


@pytest.fixture
def server(tmp_path: Path, clock: FrozenClock) -> Iterator[FakeBillingServer]:
    with running(tmp_path / "billing.sqlite", clock) as fake:
        yield fake


def client(server: FakeBillingServer, **kw: object) -> HttpBillingSystem:
    options: dict[str, object] = {"timeout": 2.0, "retries": 2, "backoff": 0.01}
    options.update(kw)
    return HttpBillingSystem(server.url, TOKEN, **options)  # type: ignore[arg-type]


class TestHttpBillingSystem(BillingContract):
    @pytest.fixture
    def billing(self, server: FakeBillingServer) -> Harness:
        return Harness(client(server), server.seed)


@pytest.fixture
def seeded(server: FakeBillingServer, clock: FrozenClock) -> FakeBillingServer:
    server.seed(lambda session: seed_world(session, clock))
    return server


def test_5xx_answers_are_retried_then_succeed(seeded) -> None:
    seeded.fail_next = 2
    assert client(seeded, retries=2).get_account(ACCOUNT).account_no == ACCOUNT
    assert len(seeded.requests) == 3


def test_retries_run_out_into_billing_unavailable(seeded) -> None:
    seeded.fail_next = 5
    with pytest.raises(BillingUnavailable, match="HTTP 503"):
        client(seeded, retries=2).post_payment(posting())
    assert len(seeded.requests) == 3
    assert seeded.posting_count() == 0


def test_4xx_is_never_retried(seeded) -> None:
    with pytest.raises(BillingRejected) as caught:
        HttpBillingSystem(seeded.url, "wrong-token", retries=3, backoff=0.01
                          ).get_account(ACCOUNT)
    assert caught.value.code == "unauthorized"
    assert len(seeded.requests) == 1


def test_every_post_carries_a_stable_idempotency_key(seeded) -> None:
    system = client(seeded)
    seeded.fail_next = 1
    system.post_payment(posting())
    system.reverse_payment(posting().order_no, "refund RF1", reversal_no="RF1", amount_fen=5000)
    system.apply_adjustment(adjustment())
    system.submit_reading(reading("1100"))
    system.list_bills(ACCOUNT, "2026-01")
    keys = [(method, headers.get("Idempotency-Key")) for method, _, headers in seeded.requests]
    assert keys[:2] == [("POST", "payment:DF202612030001")] * 2  # the retry repeats the key
    assert keys[2:5] == [("POST", "reversal:RF1"), ("POST", "adjustment:ADJ-1"),
                         ("POST", "reading:9900000001:990000001234:2026-11:2026-11-28:1100")]
    assert keys[5] == ("GET", None)
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for _, _, h in seeded.requests)


def test_a_lost_reply_is_retried_and_posts_once(seeded) -> None:
    seeded.lose_replies = 1
    receipt = client(seeded).post_payment(posting())
    assert receipt.duplicate  # the server had written it; the retry found it there
    assert seeded.posting_count() == 1


def test_a_slow_server_times_out_and_the_retry_posts_once(seeded) -> None:
    seeded.delay_next, seeded.delay_seconds = 1, 1.5
    receipt = client(seeded, timeout=0.5, retries=3).post_payment(posting())
    assert receipt.order_no == posting().order_no
    seeded.stop()  # waits for the slow request, which then finds the posting made
    assert seeded.posting_count() == 1


def test_a_slow_server_without_retries_is_unavailable(seeded) -> None:
    seeded.delay_next, seeded.delay_seconds = 1, 0.6
    with pytest.raises(BillingUnavailable):
        client(seeded, timeout=0.2, retries=0).get_account(ACCOUNT)


def test_nobody_listening_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    system = HttpBillingSystem(f"http://127.0.0.1:{port}", TOKEN, timeout=1, retries=1,
                               backoff=0.01)
    with pytest.raises(BillingUnavailable, match="ConnectionError"):
        system.get_account(ACCOUNT)


@pytest.mark.parametrize("reply", [b"<html>proxy error</html>", b'{"account": "9900000001"}',
                                   b'{"bills": [{"period": "2026-11"}]}'])
def test_an_answer_off_the_contract_is_unavailable_not_a_crash(seeded, reply: bytes) -> None:
    seeded.garbled_reply = reply
    system = client(seeded)
    with pytest.raises(BillingUnavailable, match=r"not JSON|missing"):
        system.get_account(ACCOUNT)
    with pytest.raises(BillingUnavailable, match=r"not JSON|missing|expected"):
        system.list_bills(ACCOUNT, "2026-01")


def test_list_bills_needs_since_on_the_wire(seeded) -> None:
    import requests

    response = requests.get(f"{seeded.url}/v1/accounts/{ACCOUNT}/bills", timeout=5,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
