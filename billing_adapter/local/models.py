"""The database copy of the shipped tariffs: one row per (tariff code, version).

Scalar facts are columns; the short lists (tier bounds and increments, seasonal bounds) and the
price per register are JSON with every number as a decimal *string*, so no float ever holds a
price. ``tariffs.load_tariffs`` writes these rows from the data files; ``TariffBook.from_db``
reads them back into exactly the book ``TariffBook.shipped()`` builds.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from portal.kernel.db import Base, IdMixin


class TariffVersionRow(IdMixin, Base):
    __tablename__ = "tariff_versions"
    __table_args__ = (sa.UniqueConstraint("code", "effective_from"),)

    code: Mapped[str] = mapped_column(sa.String(64))
    effective_from: Mapped[date]
    name: Mapped[str] = mapped_column(sa.String(200))
    customer_class: Mapped[str] = mapped_column(sa.String(16))
    thresholds: Mapped[str] = mapped_column(sa.String(8))  # monthly | annual | none
    tier_year_start: Mapped[str | None] = mapped_column(sa.String(5))  # MM-DD, annual only
    tier_kwh: Mapped[list[str]] = mapped_column(sa.JSON)
    tier_increments: Mapped[list[str]] = mapped_column(sa.JSON)
    prices: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    seasons: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    source: Mapped[str] = mapped_column(sa.Text)
