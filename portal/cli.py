"""Flask commands. ``flask --app wsgi db ...`` comes from Flask-Migrate; the rest is ours."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from portal import context, demo
from portal.extensions import db

demo_cli = AppGroup("demo", help="Demo data for the embedded default.")


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo districts, customers, accounts, readings and bills (once), print sign-ins."""
    if demo.is_seeded(db.session):
        click.echo("Demo data is already there; nothing changed.")
    else:
        demo.seed(db.session, context.clock(), context.today())
        db.session.commit()
        click.echo("Demo data created.")
    for line in demo.describe():
        click.echo(line)


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
