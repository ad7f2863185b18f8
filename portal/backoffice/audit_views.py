"""Audit log pages (supervisors and administrators), on the back office's blueprint: search the
log (``portal.backoffice.audit_log``) by staff, account, action and dates, page through it
(keyset), export the search as a streamed CSV file, and read an account's ledger (its money
movements) on the second tab.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

from flask import Response, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from portal import context
from portal.backoffice import audit_log
from portal.backoffice.auth import current_staff, require
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError


def _day(name: str) -> tuple[date | None, str | None]:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None, None
    try:
        return date.fromisoformat(raw[:10]), None
    except ValueError:
        return None, _("Enter dates as YYYY-MM-DD, e.g. 2026-11-30.")


def _filters() -> tuple[audit_log.Filters, str | None]:
    since, error = _day("since")
    until, error_until = _day("until")
    args = request.args
    return audit_log.Filters(staff=args.get("staff", "")[:64], account=args.get("account", "")[:20],
                             action=args.get("action", "")[:64], since=since,
                             until=until), error or error_until


@bp.get("/audit")
@require(Permission.VIEW_AUDIT_LOG)
def audit() -> ResponseReturnValue:
    staff = current_staff()
    filters, error = _filters()
    tab = "ledger" if request.args.get("tab") == "ledger" else "log"
    cursor = request.args.get("after") or None
    page = ledger = None
    status = 400 if error else 200
    try:
        if tab == "ledger" and filters.account:
            ledger = audit_log.ledger(db.session, staff, filters.account, cursor)
        elif tab == "log" and not error:
            page = audit_log.search(db.session, staff, filters, context.settings().zone, cursor)
    except DomainError as exc:
        if exc.status == 404:
            raise
        error, status = message_for(exc), exc.status
    return render_template("backoffice/audit.html", filters=filters, page=page, ledger=ledger,
                           tab=tab, error=error, args=request.args), status


@bp.get("/audit.csv")
@require(Permission.VIEW_AUDIT_LOG)
def audit_csv() -> ResponseReturnValue:
    staff = current_staff()
    filters, error = _filters()
    if error:
        return error, 400
    zone = context.settings().zone

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        for row in audit_log.csv_rows(db.session, staff, filters, zone):
            writer.writerow(row)
            yield out.getvalue()
            out.seek(0)
            out.truncate()

    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'})
