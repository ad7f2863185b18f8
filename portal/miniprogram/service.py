"""Who a WeChat user is: customers found by openid, and binding an openid to a customer.

One openid belongs to at most one customer (a unique column). Binding moves it: the WeChat user
who proves a customer's credentials signs in as that customer from then on, and tokens issued
for the old binding stop working (they carry the openid's fingerprint).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.accounts.models import Customer
from portal.kernel.clock import Clock
from portal.miniprogram.wxlogin import WxIdentity


def customer_by_openid(session: Session, openid: str) -> Customer | None:
    return session.scalar(sa.select(Customer).where(Customer.wechat_openid == openid,
                                                    Customer.is_active.is_(True)))


def bind_openid(session: Session, clock: Clock, customer: Customer, who: WxIdentity) -> None:
    """Give ``customer`` this WeChat identity, taking it from whoever had it. Flushes."""
    session.execute(sa.update(Customer)
                    .where(Customer.wechat_openid == who.openid, Customer.id != customer.id)
                    .values(wechat_openid=None, wechat_unionid=None)
                    .execution_options(synchronize_session="fetch"))
    customer.wechat_openid = who.openid
    customer.wechat_unionid = who.unionid
    customer.last_login_at = clock.now()
    session.flush()


def unbind_openid(session: Session, customer: Customer) -> None:
    customer.wechat_openid = None
    customer.wechat_unionid = None
    session.flush()
