"""Flask commands. ``flask --app wsgi db ...`` comes from Flask-Migrate; the rest is ours."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from billing_adapter.local.tariffs import load_tariffs
from portal import context, demo
from portal.billing_cli import billing
from portal.extensions import db

demo_cli = AppGroup("demo", help="Demo data for the embedded default.")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo districts, customers, accounts, readings and bills (once), print sign-ins.

    The shipped tariffs are (re)loaded into the database every time (an idempotent upsert)."""
    load_tariffs(db.session)
    if demo.is_seeded(db.session):
        click.echo("Demo data is already there; nothing changed.")
    else:
        demo.seed(db.session, context.clock(), context.today())
        click.echo("Demo data created.")
    db.session.commit()
    for line in demo.describe():
        click.echo(line)


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
    app.cli.add_command(billing)
