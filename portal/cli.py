"""Flask commands. ``flask --app wsgi db ...`` comes from Flask-Migrate; the rest is ours."""

from __future__ import annotations

import os

import click
from flask import Flask
from flask.cli import AppGroup

from billing_adapter.local.tariffs import load_tariffs
from portal import context, demo
from portal.backoffice import service as staff_service
from portal.backoffice.models import StaffRole
from portal.billing_cli import billing
from portal.extensions import db
from portal.readings_cli import readings_cli
from portal.reconcile_cli import reconcile_command

demo_cli = AppGroup("demo", help="Demo data for the embedded default.")
staff_cli = AppGroup("staff", help="Back-office staff.")
STAFF_PASSWORD_ENV = "DIANFEI_STAFF_PASSWORD"  # noqa: S105 - the variable's name


@demo_cli.command("seed")
def demo_seed() -> None:
    """Create demo districts, customers, accounts, readings and bills, a payment plan and a
    dispute (once), print sign-ins.

    The shipped tariffs are (re)loaded into the database every time (an idempotent upsert)."""
    load_tariffs(db.session)
    if demo.is_seeded(db.session):
        click.echo("Demo data is already there; nothing changed.")
    else:
        demo.seed(db.session, context.clock(), context.today())
        db.session.commit()
        settings = context.settings()
        for line in demo.seed_reconciliation(db.session, context.clock(), context.today(),
                                             settings.reconcile_dir, settings.zone):
            click.echo(line)
        demo.seed_cases(db.session, context.clock(), settings)
        click.echo("Demo data created.")
    db.session.commit()
    for line in demo.describe():
        click.echo(line)


@staff_cli.command("create")
@click.option("--username", required=True, help="Sign-in name: letters, digits, . _ -")
@click.option("--role", required=True,
              help="reader, auditor, collector, supervisor or admin")
@click.option("--district", "districts", multiple=True, metavar="CODE",
              help="A district code; repeat for several (admins see every district anyway)")
@click.option("--name", "display_name", default="", help="Display name (default: the username)")
def staff_create(username: str, role: str, districts: tuple[str, ...], display_name: str) -> None:
    """Create a member of staff, e.g. the first admin. The password is read from
    $DIANFEI_STAFF_PASSWORD, or asked for twice."""
    try:
        staff_role = StaffRole(role.strip().lower())
    except ValueError:
        raise click.ClickException(f"unknown role {role!r}; choose one of "
                                   + ", ".join(r.value for r in StaffRole)) from None
    password = os.environ.get(STAFF_PASSWORD_ENV) or click.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    try:
        member = staff_service.create_staff(
            db.session, context.clock(), username=username, display_name=display_name,
            password=password, role=staff_role,
            district_ids=staff_service.district_ids_for_codes(db.session, districts))
    except staff_service.UnknownDistrict as exc:
        raise click.ClickException(f"no district with code {exc.detail!r}") from None
    except staff_service.DistrictsRequired:
        raise click.ClickException(f"a {staff_role.value} needs at least one --district") from None
    except staff_service.UsernameTaken:
        raise click.ClickException(f"the username {username!r} is taken") from None
    except staff_service.BadUsername:
        raise click.ClickException("a username is 2 to 64 letters, digits, dots, dashes or "
                                   "underscores, starting with a letter or digit") from None
    except staff_service.WeakPassword:
        raise click.ClickException(f"the password needs {staff_service.MIN_PASSWORD} to "
                                   f"{staff_service.MAX_PASSWORD} characters and must not be "
                                   "the username") from None
    db.session.commit()
    click.echo(f"Created {member.role.value} {member.username!r}. Sign in at /staff/login; "
               "the first sign-in asks for a new password.")
    if member.needs_totp:
        click.echo("This role also needs an authenticator app (TOTP): the first sign-in shows "
                   "a QR code to scan, and every sign-in then asks for its 6-digit code.")


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
    app.cli.add_command(staff_cli)
    app.cli.add_command(billing)
    app.cli.add_command(readings_cli)
    app.cli.add_command(reconcile_command)
