from datetime import timedelta

import sqlalchemy as sa

from portal.kernel import outbox
from portal.kernel.outbox import OutboxMessage, OutboxStatus, PermanentFailure


def _rows(session):
    return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def test_enqueue_is_deduplicated(session, clock) -> None:
    assert outbox.enqueue(session, clock, "t", {"a": 1}, "k1")
    assert not outbox.enqueue(session, clock, "t", {"a": 2}, "k1")
    session.commit()
    [row] = _rows(session)
    assert row.payload == {"a": 1}


def test_enqueue_rolls_back_with_its_cause(session, clock) -> None:
    outbox.enqueue(session, clock, "t", {}, "k-rolled-back")
    session.rollback()
    assert _rows(session) == []


def test_dispatch_delivers_once(session, clock) -> None:
    delivered = []
    outbox.enqueue(session, clock, "greet", {"to": "x"}, "k1")
    session.commit()
    assert outbox.dispatch(session, clock, {"greet": delivered.append}) == 1
    assert outbox.dispatch(session, clock, {"greet": delivered.append}) == 0
    assert delivered == [{"to": "x"}]
    [row] = _rows(session)
    assert row.status is OutboxStatus.SENT and row.sent_at == clock.now()


def test_transient_failure_backs_off_then_succeeds(session, clock) -> None:
    calls = []

    def flaky(payload):
        calls.append(payload)
        if len(calls) == 1:
            raise ConnectionError("gateway down")

    outbox.enqueue(session, clock, "t", {}, "k1")
    session.commit()
    assert outbox.dispatch(session, clock, {"t": flaky}) == 0
    [row] = _rows(session)
    assert row.status is OutboxStatus.PENDING and row.attempts == 1
    assert "gateway down" in row.last_error
    assert outbox.dispatch(session, clock, {"t": flaky}) == 0  # not due yet
    clock.advance(outbox.backoff(1))
    assert outbox.dispatch(session, clock, {"t": flaky}) == 1
    assert len(calls) == 2


def test_permanent_failure_and_exhaustion_go_dead(session, clock) -> None:
    def rejected(payload):
        raise PermanentFailure("template missing")

    def down(payload):
        raise TimeoutError("still down")

    outbox.enqueue(session, clock, "rejected", {}, "k1")
    outbox.enqueue(session, clock, "down", {}, "k2")
    outbox.enqueue(session, clock, "nobody-listens", {}, "k3")
    session.commit()
    for _ in range(outbox.MAX_ATTEMPTS):
        outbox.dispatch(session, clock, {"rejected": rejected, "down": down})
        clock.advance(timedelta(days=1))
    by_key = {r.dedup_key: r for r in _rows(session)}
    assert by_key["k1"].status is OutboxStatus.DEAD and by_key["k1"].attempts == 1
    assert by_key["k2"].status is OutboxStatus.DEAD
    assert by_key["k2"].attempts == outbox.MAX_ATTEMPTS
    assert by_key["k3"].status is OutboxStatus.DEAD
    assert "no handler" in by_key["k3"].last_error


def test_backoff_doubles() -> None:
    assert [outbox.backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]


def test_backoff_stops_growing_at_an_hour() -> None:
    assert outbox.backoff(8).total_seconds() == 3600
    assert outbox.backoff(500) == outbox.BACKOFF_MAX


def test_a_handler_may_keep_trying_longer(session, clock) -> None:
    class Patient:
        max_attempts = outbox.MAX_ATTEMPTS + 2

        def __call__(self, payload: dict) -> None:
            raise ConnectionError("still down")

    outbox.enqueue(session, clock, "patient", {}, "k-patient")
    session.commit()
    for _ in range(outbox.MAX_ATTEMPTS + 1):
        outbox.dispatch(session, clock, {"patient": Patient()})
        clock.advance(outbox.BACKOFF_MAX)
    [row] = _rows(session)
    assert (row.status, row.attempts) == (OutboxStatus.PENDING, outbox.MAX_ATTEMPTS + 1)
    outbox.dispatch(session, clock, {"patient": Patient()})
    assert _rows(session)[0].status is OutboxStatus.DEAD


def test_what_a_failing_handler_wrote_is_kept_with_the_retry(session, clock) -> None:
    """A handler records its attempt (and gives back what it took) before raising a transient
    error: dispatch commits that with the retry, it does not roll it back."""
    def records_then_fails(payload):
        outbox.enqueue(session, clock, "attempt", {"of": payload["n"]}, f"attempt-{payload['n']}")
        raise ConnectionError("gateway down")

    outbox.enqueue(session, clock, "t", {"n": 1}, "k1")
    session.commit()
    assert outbox.dispatch(session, clock, {"t": records_then_fails}, limit=1) == 0
    session.rollback()  # nothing left uncommitted
    assert [(r.dedup_key, r.status, r.attempts) for r in _rows(session)] == [
        ("k1", OutboxStatus.PENDING, 1), ("attempt-1", OutboxStatus.PENDING, 0)]
