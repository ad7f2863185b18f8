"""Districts, customers (people who sign in) and electricity accounts (户号) they link."""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.kernel.db import Base, IdMixin, str_enum


class CustomerClass(enum.StrEnum):
    RESIDENTIAL = "residential"
    BUSINESS = "business"


class District(IdMixin, Base):
    """A supply district (供电所/区域): the unit staff answer for."""

    __tablename__ = "districts"

    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="Asia/Shanghai")


class Customer(IdMixin, Base):
    """A person who signs in: by phone and password on the web, by WeChat in the mini-program."""

    __tablename__ = "customers"

    phone: Mapped[str] = mapped_column(sa.String(20), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    display_name: Mapped[str | None] = mapped_column(sa.String(64))
    locale: Mapped[str | None] = mapped_column(sa.String(16))
    wechat_openid: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    wechat_unionid: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    email: Mapped[str | None] = mapped_column(sa.String(254))  # for notifications, optional

    links: Mapped[list[AccountLink]] = relationship(back_populates="customer")

    # Flask-Login's user protocol, kept here without importing Flask into the domain.
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        return f"c:{self.id}"


class ElectricityAccount(IdMixin, Base):
    """An electricity account (户号) as the billing system knows it."""

    __tablename__ = "electricity_accounts"

    account_no: Mapped[str] = mapped_column(sa.String(20), unique=True)
    holder_name: Mapped[str] = mapped_column(sa.String(100))
    address: Mapped[str] = mapped_column(sa.String(255))
    district_id: Mapped[int] = mapped_column(sa.ForeignKey("districts.id"), index=True)
    customer_class: Mapped[CustomerClass] = mapped_column(str_enum(CustomerClass,
                                                                   "customer_class"))
    tariff_code: Mapped[str] = mapped_column(sa.String(64))
    # Staff may waive late fees (违约金) on an account; the bill page and late-fee jobs honour it.
    late_fee_waived: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime]

    district: Mapped[District] = relationship()
    meters: Mapped[list[Meter]] = relationship(back_populates="account", order_by="Meter.id")


class AccountLink(IdMixin, Base):
    """A customer's proven claim on an account (户号 + holder name + last 4 meter digits)."""

    __tablename__ = "account_links"
    __table_args__ = (sa.UniqueConstraint("customer_id", "account_id"),)

    customer_id: Mapped[int] = mapped_column(sa.ForeignKey("customers.id"), index=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"), index=True)
    created_at: Mapped[datetime]

    customer: Mapped[Customer] = relationship(back_populates="links")
    account: Mapped[ElectricityAccount] = relationship()


class Meter(IdMixin, Base):
    __tablename__ = "meters"

    account_id: Mapped[int] = mapped_column(sa.ForeignKey("electricity_accounts.id"), index=True)
    meter_no: Mapped[str] = mapped_column(sa.String(32), unique=True)
    is_tou: Mapped[bool] = mapped_column(default=False)
    installed_on: Mapped[date]
    removed_on: Mapped[date | None]

    account: Mapped[ElectricityAccount] = relationship(back_populates="meters")
