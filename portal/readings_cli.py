"""``flask --app wsgi readings import FILE.csv``: readings from a file, all or nothing.

The CSV has a header row with the columns (any order; ``peak_kwh``, ``flat_kwh`` and
``valley_kwh`` may be left out or empty for meters without TOU registers)::

    account_no,meter_no,period,read_on,value_kwh,peak_kwh,flat_kwh,valley_kwh
    1100000001,110101000001,2026-12,2026-12-28,5230.50,,,

Encoding UTF-8 (a BOM is fine). Each row goes through the same rules as a self-reading
(``portal.readings.service.record``, source ``import``): plausible readings are accepted and
handed to the billing system, implausible ones are stored ``flagged`` for the staff queue. A row
that cannot be a reading (unknown meter, bad number or date, a reading the meter already has for
the period, one the billing system refuses) is reported with its row number, and then **nothing**
is imported: fix the file and run it again.
"""

from __future__ import annotations

import csv
import io

import click
from flask.cli import AppGroup
from flask_babel import force_locale

from portal import context
from portal.billing import billing_system
from portal.billing_cli import OneLineCommand
from portal.extensions import db
from portal.i18n import message_for
from portal.readings import service

readings_cli = AppGroup("readings", help="Meter readings: import from a CSV file.")
MAX_ROWS = 200_000


@readings_cli.command("import", cls=OneLineCommand)
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def import_command(path: str) -> None:
    """Import readings from a CSV file; nothing is imported if any row is bad."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        text = file.read()
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in service.REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise click.ClickException(
            f"the header lacks {', '.join(missing)}; the columns are "
            f"{','.join(service.CSV_COLUMNS)}")
    rows = list(reader)
    if len(rows) > MAX_ROWS:
        raise click.ClickException(f"at most {MAX_ROWS} rows per file; split the file")
    with click.progressbar(length=len(rows), label="Importing readings") as bar:
        result = service.import_rows(db.session, context.clock(), context.settings(), rows,
                                     system=billing_system(db.session), progress=bar.update)
    if result.errors:
        db.session.rollback()
        with force_locale("en"):
            for number, error in result.errors:
                where = getattr(error, "field", "")
                click.echo(f"row {number}{f' ({where})' if where else ''}: {message_for(error)}",
                           err=True)
        raise click.ClickException(f"{len(result.errors)} bad rows of {len(rows)}; nothing "
                                   "was imported")
    db.session.commit()
    click.echo(f"{len(rows)} readings imported: {result.accepted} accepted, {result.flagged} "
               "flagged for review.")
