"""Effective-dated tariffs as data.

Each tariff is a TOML file in ``tariff_data/`` (shipped as package data), read with ``tomllib``
with every decimal number parsed as ``Decimal``. A tariff has one or more versions, each in force
from its ``effective_from`` until the next version's. A version says:

* ``thresholds``: ``"monthly"`` (tier bounds count the kWh of the billing month), ``"annual"``
  (they count the kWh of the tier year, which starts on ``tier_year_start`` MM-DD) or ``"none"``
  (no tiers: business tariffs);
* ``tier_kwh``: the upper bounds of tiers 1..n (kWh), and ``tier_increments``: the yuan/kWh added
  to *every* price (base and each TOU register) for the kWh above each bound;
* ``seasons`` (optional, monthly thresholds): ``[{months = [7, 8], tier_kwh = [...]}]`` replaces
  the bounds in those months;
* ``prices``: yuan/kWh per register: ``base`` for a meter without TOU registers, and any of
  ``peak``/``flat``/``valley`` for TOU meters.

The database holds a copy (``billing_adapter.local.models.TariffVersionRow``), written by
``load_tariffs`` and read by ``TariffBook.from_db``; both give the same book.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing_adapter.local.models import TariffVersionRow

REGISTERS = ("peak", "flat", "valley")
PRICE_KEYS = ("base", *REGISTERS)
THRESHOLD_KINDS = ("monthly", "annual", "none")


class TariffError(ValueError):
    """A tariff that does not exist, is not in force on a date, or is malformed."""


@dataclass(frozen=True)
class Season:
    months: frozenset[int]
    tier_kwh: tuple[Decimal, ...]


@dataclass(frozen=True)
class TariffVersion:
    code: str
    effective_from: date
    name: str
    customer_class: str
    thresholds: str  # monthly | annual | none
    tier_year_start: tuple[int, int] | None  # (month, day) for annual thresholds
    tier_kwh: tuple[Decimal, ...]
    tier_increments: tuple[Decimal, ...]
    prices: Mapping[str, Decimal]
    seasons: tuple[Season, ...] = ()
    source: str = ""

    def bounds_for_month(self, month: int) -> tuple[Decimal, ...]:
        """The tier bounds that apply in a calendar month (a season's, or the default)."""
        for season in self.seasons:
            if month in season.months:
                return season.tier_kwh
        return self.tier_kwh

    def tier_year(self, on: date) -> tuple[date, date] | None:
        if self.thresholds != "annual" or self.tier_year_start is None:
            return None
        month, day = self.tier_year_start
        start = date(on.year, month, day)
        if on < start:
            start = date(on.year - 1, month, day)
        return start, date(start.year + 1, month, day) - timedelta(days=1)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise TariffError(f"{what} must be a decimal number, not {value!r}")
    try:
        number = Decimal(value)
    except ArithmeticError as exc:
        raise TariffError(f"{what} is not a number: {value!r}") from exc
    if not number.is_finite() or number < 0:
        raise TariffError(f"{what} must be a finite number >= 0, not {value!r}")
    return number


def _version(code: str, name: str, customer_class: str, source: str,
             spec: Mapping[str, Any]) -> TariffVersion:
    """Validate one version's plain data (from TOML or from a database row)."""
    kind = spec.get("thresholds")
    if kind not in THRESHOLD_KINDS:
        raise TariffError(f"{code}: thresholds must be one of {THRESHOLD_KINDS}, not {kind!r}")
    effective = spec.get("effective_from")
    if not isinstance(effective, date):
        raise TariffError(f"{code}: effective_from must be a date")
    bounds = tuple(_decimal(v, f"{code} tier_kwh") for v in spec.get("tier_kwh", ()))
    increments = tuple(_decimal(v, f"{code} tier_increments")
                       for v in spec.get("tier_increments", ()))
    if len(bounds) != len(increments):
        raise TariffError(f"{code}: tier_kwh and tier_increments must have the same length")
    if list(bounds) != sorted(set(bounds)) or (bounds and bounds[0] <= 0):
        raise TariffError(f"{code}: tier_kwh must be increasing and positive")
    if (kind == "none") != (not bounds):
        raise TariffError(f"{code}: tiers need monthly or annual thresholds, and vice versa")
    start: tuple[int, int] | None = None
    if kind == "annual":
        raw = str(spec.get("tier_year_start") or "01-01")
        try:
            month, day = (int(part) for part in raw.split("-"))
            date(2001, month, day)  # a non-leap year: 02-29 is refused
        except ValueError as exc:
            raise TariffError(f"{code}: tier_year_start must be MM-DD, not {raw!r}") from exc
        start = (month, day)
    prices = {key: _decimal(value, f"{code} price {key}")
              for key, value in dict(spec.get("prices", {})).items()}
    if not prices or set(prices) - set(PRICE_KEYS):
        raise TariffError(f"{code}: prices must name some of {PRICE_KEYS}")
    seasons = []
    for raw_season in spec.get("seasons", ()):
        months = frozenset(int(m) for m in raw_season["months"])
        season_bounds = tuple(_decimal(v, f"{code} season tier_kwh")
                              for v in raw_season["tier_kwh"])
        if kind != "monthly" or len(season_bounds) != len(bounds) or not months <= set(
                range(1, 13)):
            raise TariffError(f"{code}: seasons need monthly thresholds and as many bounds")
        seasons.append(Season(months, season_bounds))
    return TariffVersion(code=code, effective_from=effective, name=name,
                         customer_class=customer_class, thresholds=kind, tier_year_start=start,
                         tier_kwh=bounds, tier_increments=increments, prices=prices,
                         seasons=tuple(seasons), source=source)


def parse_tariff(text: str) -> list[TariffVersion]:
    """One tariff file (TOML) into its versions."""
    try:
        doc = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise TariffError(f"not a tariff file: {exc}") from exc
    code = doc.get("code")
    if not isinstance(code, str) or not code:
        raise TariffError("a tariff file needs a code")
    return [_version(code, str(doc.get("name", code)), str(doc.get("customer_class", "")),
                     str(doc.get("source", "")).strip(), spec)
            for spec in doc.get("versions", ())]


@dataclass(frozen=True)
class TariffBook:
    """An immutable set of effective-dated tariff versions, by code."""

    versions: Mapping[str, tuple[TariffVersion, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, versions: Iterable[TariffVersion]) -> TariffBook:
        by_code: dict[str, list[TariffVersion]] = {}
        for version in versions:
            by_code.setdefault(version.code, []).append(version)
        for code, items in by_code.items():
            days = [v.effective_from for v in items]
            if len(set(days)) != len(days):
                raise TariffError(f"{code}: two versions start on the same day")
            items.sort(key=lambda v: v.effective_from)
        return cls({code: tuple(items) for code, items in sorted(by_code.items())})

    @classmethod
    def shipped(cls) -> TariffBook:
        """The tariffs in the data files shipped with the engine."""
        folder = resources.files("billing_adapter.local") / "tariff_data"
        files = sorted((e for e in folder.iterdir() if e.name.endswith(".toml")),
                       key=lambda e: e.name)
        return cls.of(v for entry in files for v in parse_tariff(entry.read_text("utf-8")))

    @classmethod
    def from_db(cls, session: Session) -> TariffBook:
        rows = session.scalars(sa.select(TariffVersionRow)).all()
        return cls.of(_version(row.code, row.name, row.customer_class, row.source, {
            "effective_from": row.effective_from, "thresholds": row.thresholds,
            "tier_year_start": row.tier_year_start, "tier_kwh": row.tier_kwh,
            "tier_increments": row.tier_increments, "prices": row.prices,
            "seasons": row.seasons}) for row in rows)

    def codes(self) -> list[str]:
        return list(self.versions)

    def has(self, code: str) -> bool:
        return code in self.versions

    def version_on(self, code: str, on: date) -> TariffVersion:
        """The version of ``code`` in force on ``on``."""
        if code not in self.versions:
            raise TariffError(f"unknown tariff {code!r}")
        current = None
        for version in self.versions[code]:
            if version.effective_from <= on:
                current = version
        if current is None:
            raise TariffError(f"tariff {code!r} is not in force on {on.isoformat()}")
        return current

    def tier_year(self, code: str, on: date) -> tuple[date, date] | None:
        """[start, end] of the tier year containing ``on`` for annual-threshold tariffs; None for
        monthly thresholds and for tariffs without tiers."""
        return self.version_on(code, on).tier_year(on)


def _row_values(version: TariffVersion) -> dict[str, Any]:
    start = version.tier_year_start
    return {
        "name": version.name, "customer_class": version.customer_class,
        "thresholds": version.thresholds,
        "tier_year_start": f"{start[0]:02d}-{start[1]:02d}" if start else None,
        "tier_kwh": [str(v) for v in version.tier_kwh],
        "tier_increments": [str(v) for v in version.tier_increments],
        "prices": {key: str(value) for key, value in version.prices.items()},
        "seasons": [{"months": sorted(s.months), "tier_kwh": [str(v) for v in s.tier_kwh]}
                    for s in version.seasons],
        "source": version.source,
    }


def load_tariffs(session: Session, book: TariffBook | None = None) -> int:
    """Upsert the shipped tariffs (or ``book``) into the database; returns how many version rows
    it inserted or changed (0 when the database already matches). The caller commits."""
    book = book or TariffBook.shipped()
    existing = {(row.code, row.effective_from): row
                for row in session.scalars(sa.select(TariffVersionRow))}
    written = 0
    for versions in book.versions.values():
        for version in versions:
            values = _row_values(version)
            row = existing.get((version.code, version.effective_from))
            if row is None:
                session.add(TariffVersionRow(code=version.code,
                                             effective_from=version.effective_from, **values))
                written += 1
            elif any(getattr(row, key) != value for key, value in values.items()):
                for key, value in values.items():
                    setattr(row, key, value)
                written += 1
    session.flush()
    return written
