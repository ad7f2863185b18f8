"""``flask --app wsgi billing ...``: the embedded billing engine for staff and for checking.

``quote`` and ``late-fee`` print JSON; every bad argument exits non-zero with one line
(``Error: ...``) and no traceback. ``quote`` prices exactly as the bill run does: it upserts the
tariffs shipped with the engine into the database, then prices from the database copy (the one
the bill pages read too). ``load-tariffs`` does only the upsert.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from flask.cli import AppGroup

from billing_adapter.local import bill_run
from billing_adapter.local.late_fees import CUSTOMER_CLASSES, late_fee
from billing_adapter.local.pricing import Usage, UsageError, quote
from billing_adapter.local.tariffs import TariffBook, TariffError, load_tariffs
from portal import context
from portal.extensions import db
from portal.kernel.money import format_yuan


class OneLineCommand(click.Command):
    """Usage errors (missing options, bad values) as one ``Error: ...`` line, not usage text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from None


class KwhType(click.ParamType):
    name = "kWh"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Decimal:
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            self.fail(f"{value!r} is not a number of kWh", param, ctx)
        if not number.is_finite() or number < 0:
            self.fail(f"{value!r} must be a number of kWh >= 0", param, ctx)
        return number


class PeriodType(click.ParamType):
    name = "YYYY-MM"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> date:
        try:
            return datetime.strptime(str(value), "%Y-%m").date()  # noqa: DTZ007 - a month
        except ValueError:
            self.fail(f"{value!r} is not a period like 2026-11", param, ctx)


class DayType(click.ParamType):
    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> date:
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not a date like 2026-12-25", param, ctx)


KWH = KwhType()
billing = AppGroup("billing", help="The embedded billing engine: tariffs, quotes, late fees.")


@billing.command("load-tariffs", cls=OneLineCommand)
def load_tariffs_command() -> None:
    """Load (or update) the shipped tariffs into the database; idempotent."""
    written = load_tariffs(db.session)
    db.session.commit()
    click.echo(f"{written} tariff versions written; "
               f"{len(TariffBook.from_db(db.session).codes())} tariffs in the database.")


@billing.command("quote", cls=OneLineCommand)
@click.option("--tariff", "code", required=True, help="Tariff code, e.g. zhejiang-residential.")
@click.option("--period", required=True, type=PeriodType(), help="Billing month, YYYY-MM.")
@click.option("--kwh", required=True, type=KWH, help="kWh used in the period.")
@click.option("--ytd-kwh", type=KWH, help="kWh already billed this tier year (annual tariffs).")
@click.option("--peak-kwh", type=KWH)
@click.option("--flat-kwh", type=KWH)
@click.option("--valley-kwh", type=KWH)
def quote_command(code: str, period: date, kwh: Decimal, ytd_kwh: Decimal | None,
                  peak_kwh: Decimal | None, flat_kwh: Decimal | None,
                  valley_kwh: Decimal | None) -> None:
    """Price a month's usage and print the bill lines as JSON."""
    book = bill_run.load_book(db.session)  # the shipped tariffs, upserted, then as in the DB
    if not book.has(code):
        raise click.ClickException(f"unknown tariff {code!r} (known: {', '.join(book.codes())})")
    end = (period + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    try:
        if ytd_kwh is not None and book.tier_year(code, period) is None:
            raise click.ClickException(
                f"--ytd-kwh applies only to tariffs with annual thresholds, not {code!r}")
        usage = Usage(kwh, peak_kwh, flat_kwh, valley_kwh)
        result = quote(book, code, period, end, usage, ytd_kwh or Decimal(0))
    except (TariffError, UsageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({
        "total_fen": result.total_fen,
        "lines": [{"kind": line.kind, "tier": line.tier, "register": line.register,
                   "kwh": str(line.kwh), "unit_price": str(line.unit_price),
                   "amount_fen": line.amount_fen, "description": line.description}
                  for line in result.lines],
    }, ensure_ascii=False, indent=2))


@billing.command("late-fee", cls=OneLineCommand)
@click.option("--class", "customer_class", required=True, type=click.Choice(CUSTOMER_CLASSES))
@click.option("--amount-fen", required=True, type=click.IntRange(min=0),
              help="Arrears in fen.")
@click.option("--due", required=True, type=DayType(), help="Due date, YYYY-MM-DD.")
@click.option("--paid", required=True, type=DayType(), help="Payment date, YYYY-MM-DD.")
def late_fee_command(customer_class: str, amount_fen: int, due: date, paid: date) -> None:
    """The late fee (违约金) on arrears paid late, as JSON."""
    fee = late_fee(customer_class, amount_fen, due, paid)
    click.echo(json.dumps({"late_fee_fen": fee.fee_fen, "days": fee.days}))


@billing.command("run", cls=OneLineCommand)
@click.option("--period", required=True, type=PeriodType(), help="Billing month, YYYY-MM.")
@click.option("--chunk-size", default=bill_run.RunConfig().chunk_size, show_default=True,
              type=click.IntRange(min=1, max=10_000), help="Accounts per transaction.")
def run_command(period: date, chunk_size: int) -> None:
    """Compute, verify and issue the month's bills for every account with a reading.

    Idempotent and resumable: accounts that have a bill for the month are skipped."""
    settings = context.settings()
    config = bill_run.RunConfig.from_settings(settings, chunk_size=chunk_size)
    name = f"{period:%Y-%m}"
    book = bill_run.load_book(db.session)
    with click.progressbar(length=bill_run.count_accounts(db.session),
                           label=f"Billing {name}") as bar:
        result = bill_run.run(db.session, context.clock(), book, name, config,
                              progress=bar.update)
    if result.billed == 0:
        click.echo(f"Nothing to do for {name}: {result.already_billed} accounts were billed "
                   f"already; the others have no accepted reading for the month.")
        return
    click.echo(f"{name}: {result.issued} bills issued ({format_yuan(result.issued_fen)} yuan), "
               f"{result.held} held for review, {result.already_billed} billed before this run.")
