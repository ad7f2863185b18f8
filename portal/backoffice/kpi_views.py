"""The KPI dashboard (supervisors and administrators), on the back office's blueprint: the figures
of ``portal.backoffice.kpi`` per visible district and for all of them, as tables and ECharts
charts, and a CSV file of each figure. ``?district=<code>`` narrows to one district (404 when it
is not one of the member's); ``?period=YYYY-MM`` chooses the billing period (default: last
month).
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from werkzeug.exceptions import NotFound

from portal import context
from portal.backoffice import kpi
from portal.backoffice.auth import current_staff, require
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.extensions import db
from portal.kernel.money import fen_to_yuan_str

PERIOD = re.compile(r"20\d{2}-(0[1-9]|1[0-2])")


def _board() -> kpi.Dashboard:
    today = context.today()
    period = request.args.get("period", "") or kpi.last_month(today)
    if not PERIOD.fullmatch(period):
        period = kpi.last_month(today)
    district = request.args.get("district", "")[:32] or None
    scope = kpi.scope(db.session, current_staff(), district)
    return kpi.board(db.session, scope, period, today, context.settings().zone)


def _chart_data(board: kpi.Dashboard) -> dict[str, Any]:
    """What the charts draw: yuan as strings (exact), rates as strings; the script only draws."""
    codes = [d.code for d in board.scope.districts]
    ids = board.scope.ids
    return {
        "districts": codes,
        "collection_rate": [str(board.collection.get(i, kpi.Collection()).rate or 0)
                            for i in ids],
        "buckets": list(kpi.BUCKETS),
        "arrears": {b: [fen_to_yuan_str(board.arrears.get(i, kpi.Arrears()).owed_fen[b])
                        for i in ids] for b in kpi.BUCKETS},
        "channels": board.channels,
        "payments": {c: fen_to_yuan_str(board.total_payments().amount_fen.get(c, 0))
                     for c in board.channels},
    }


@bp.get("/kpis")
@require(Permission.VIEW_KPIS)
def kpis() -> ResponseReturnValue:
    board = _board()
    rows = [(d.name, d.id) for d in board.scope.districts] + [(_("All"), None)]
    return render_template("backoffice/kpis.html", board=board, buckets=kpi.BUCKETS, rows=rows,
                           figures=kpi.FIGURES, chart=_chart_data(board),
                           district=request.args.get("district", ""),
                           local_zone=context.settings().zone)


@bp.get("/kpis/<figure>.csv")
@require(Permission.VIEW_KPIS)
def kpis_csv(figure: str) -> ResponseReturnValue:
    if figure not in kpi.FIGURES:
        raise NotFound()
    board = _board()
    name = f"kpi-{figure}-{board.period}.csv"
    return Response(kpi.to_csv(kpi.csv_rows(board, figure)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
