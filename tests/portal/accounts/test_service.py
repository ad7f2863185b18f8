import pytest
import sqlalchemy as sa

from portal.accounts import service as accounts
from portal.accounts.models import AccountLink, Customer
from portal.kernel.errors import NotFound
from tests import factories
from tests.helpers import run_concurrently


def test_register_normalises_phone_and_hashes_password(session, clock) -> None:
    customer = accounts.register(session, clock, "+86 138-0013-8000", "s3cret-pass")
    session.commit()
    assert customer.phone == "13800138000"
    assert customer.password_hash.startswith("$argon2id$")
    assert "s3cret-pass" not in customer.password_hash


def test_duplicate_phone_is_refused(session, clock) -> None:
    accounts.register(session, clock, "13800138000", "s3cret-pass")
    session.commit()
    with pytest.raises(accounts.PhoneTaken):
        accounts.register(session, clock, "0086 13800138000", "other-pass")
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1


def test_authenticate(session, clock) -> None:
    accounts.register(session, clock, "13800138000", "s3cret-pass")
    session.commit()
    assert accounts.authenticate(session, clock, "13800138000", "wrong-pass") is None
    assert accounts.authenticate(session, clock, "13900000000", "s3cret-pass") is None
    customer = accounts.authenticate(session, clock, "138 0013 8000", "s3cret-pass")
    assert customer is not None and customer.last_login_at == clock.now()


def test_inactive_customer_cannot_sign_in(session, clock) -> None:
    customer = accounts.register(session, clock, "13800138000", "s3cret-pass")
    customer.is_active = False
    session.commit()
    assert accounts.authenticate(session, clock, "13800138000", "s3cret-pass") is None


@pytest.fixture
def customer(session, clock) -> Customer:
    c = accounts.register(session, clock, "13800138000", "s3cret-pass")
    session.commit()
    return c


@pytest.mark.parametrize(("account_no", "holder", "last4"), [
    ("9900000002", "测试户", "1234"),   # no such account
    ("9900000001", "别人", "1234"),     # wrong holder
    ("9900000001", "测试户", "4321"),   # wrong meter digits
    ("9900000001", "测试户", "%"),      # LIKE wildcard is not a match-all
])
def test_link_needs_all_three_to_match(session, clock, customer, account_no, holder,
                                       last4) -> None:
    factories.account(session, clock)
    session.commit()
    with pytest.raises(accounts.LinkMismatch):
        accounts.link_account(session, clock, customer, account_no, holder, last4)
    assert session.scalar(sa.select(sa.func.count()).select_from(AccountLink)) == 0


def test_link_tolerates_spacing_and_full_width_names(session, clock, customer) -> None:
    account = factories.account(session, clock, holder="王 芳")
    link = accounts.link_account(session, clock, customer, " 9900000001 ", "王芳", "1234")
    session.commit()
    assert link.account_id == account.id
    assert accounts.linked_accounts(session, customer.id) == [account]
    with pytest.raises(accounts.AlreadyLinked):
        accounts.link_account(session, clock, customer, "9900000001", "王芳", "1234")


def test_removed_meter_does_not_prove_ownership(session, clock, customer) -> None:
    account = factories.account(session, clock)
    account.meters[0].removed_on = clock.now().date()
    session.commit()
    with pytest.raises(accounts.LinkMismatch):
        accounts.link_account(session, clock, customer, "9900000001", "测试户", "1234")


def test_owned_account_hides_other_peoples_accounts(session, clock, customer) -> None:
    account = factories.account(session, clock)
    session.commit()
    with pytest.raises(NotFound):
        accounts.owned_account(session, customer.id, account.id)
    accounts.link_account(session, clock, customer, "9900000001", "测试户", "1234")
    assert accounts.owned_account(session, customer.id, account.id) is account


def test_concurrent_sign_ups_with_one_phone_make_one_customer(app, clock) -> None:
    from portal.extensions import db

    outcomes: list[str] = []

    def sign_up() -> None:
        with app.app_context():
            try:
                accounts.register(db.session, clock, "13800138000", "s3cret-pass")
                db.session.commit()
                outcomes.append("created")
            except accounts.PhoneTaken:
                db.session.rollback()
                outcomes.append("taken")
            finally:
                db.session.remove()

    run_concurrently(sign_up, 6)
    assert sorted(outcomes) == ["created"] + ["taken"] * 5
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Customer)) == 1
