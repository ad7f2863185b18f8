"""The reconciliation worklist, on the back office's blueprint: what the daily matching could
not settle by itself (补单 of a paid open order, cut-off differences found the next day), with
notes, a resolve action (a note saying why is required; who and when are recorded, and the
audit log has it) and, for a channel-only payment of an order still open, asking the channel
again (补单 by hand, through the normal payment path). Scoping: ``portal.backoffice.reconcile``.
"""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from payments.models import PaymentOrder
from payments.reconcile import service as reconcile
from payments.reconcile.models import Difference, DifferenceKind, DifferenceStatus
from payments.states import OPEN
from portal import context
from portal.backoffice import reconcile as scoped
from portal.backoffice.auth import current_staff, require
from portal.backoffice.forms import DifferenceNoteForm
from portal.backoffice.models import Permission
from portal.backoffice.views import bp
from portal.extensions import db
from portal.i18n import message_for
from portal.kernel.errors import DomainError
from portal.payment_channels import channels

KIND_LABELS = {
    DifferenceKind.CHANNEL_ONLY: _l("Channel only (长款)"),
    DifferenceKind.LOCAL_ONLY: _l("Ours only (短款)"),
    DifferenceKind.AMOUNT_MISMATCH: _l("Amounts differ"),
    DifferenceKind.STATUS_MISMATCH: _l("States differ"),
}
STATUS_LABELS = {
    DifferenceStatus.RECHECK: _l("Re-checked against the next day's statement"),
    DifferenceStatus.OPEN: _l("Open"),
    DifferenceStatus.AUTO_RESOLVED: _l("Settled automatically"),
    DifferenceStatus.RESOLVED: _l("Resolved by staff"),
    DifferenceStatus.SUPERSEDED: _l("Replaced by a newer statement"),
}


@bp.app_context_processor
def _labels() -> dict[str, object]:
    return {"difference_kind_labels": KIND_LABELS, "difference_status_labels": STATUS_LABELS}


@bp.get("/reconcile")
@require(Permission.RECONCILE)
def reconcile_list() -> ResponseReturnValue:
    staff = current_staff()
    return render_template("backoffice/reconcile.html",
                           worklist=scoped.worklist(db.session, staff),
                           settled=scoped.settled(db.session, staff),
                           statements=scoped.recent_statements(db.session, staff))


def _order(diff: Difference) -> PaymentOrder | None:
    if diff.order_no is None:
        return None
    return db.session.query(PaymentOrder).filter_by(order_no=diff.order_no).first()


def _can_requery(diff: Difference, order: PaymentOrder | None) -> bool:
    return (diff.status == DifferenceStatus.OPEN and diff.kind == DifferenceKind.CHANNEL_ONLY
            and diff.refund_no is None and order is not None
            and order.channel == diff.channel and order.status in OPEN)


def _detail(diff: Difference, form: DifferenceNoteForm | None = None,
            error: str | None = None) -> str:
    order = _order(diff)
    return render_template("backoffice/difference.html", diff=diff, order=order,
                           notes=scoped.notes(db.session, diff), form=form or DifferenceNoteForm(),
                           can_requery=_can_requery(diff, order), error=error)


@bp.get("/reconcile/differences/<id:difference_id>")
@require(Permission.RECONCILE)
def difference_detail(difference_id: int) -> ResponseReturnValue:
    return _detail(scoped.get_scoped(db.session, current_staff(), difference_id))


@bp.post("/reconcile/differences/<id:difference_id>/note")
@require(Permission.RECONCILE)
def difference_note(difference_id: int) -> ResponseReturnValue:
    staff = current_staff()
    diff = scoped.get_scoped(db.session, staff, difference_id)
    form = DifferenceNoteForm()
    if not form.validate_on_submit():
        return _detail(diff, form), 400
    reconcile.add_note(db.session, context.clock(), staff.id, diff, form.note.data)
    db.session.commit()
    flash(_("The note is saved."), "success")
    return redirect(url_for("backoffice.difference_detail", difference_id=diff.id))


@bp.post("/reconcile/differences/<id:difference_id>/resolve")
@require(Permission.RECONCILE)
def difference_resolve(difference_id: int) -> ResponseReturnValue:
    staff = current_staff()
    diff = scoped.get_scoped(db.session, staff, difference_id)
    form = DifferenceNoteForm()
    if not form.validate_on_submit():
        return _detail(diff, form), 400
    try:
        reconcile.resolve(db.session, context.clock(), staff.id, diff, form.note.data)
    except DomainError as exc:
        db.session.rollback()
        return _detail(diff, form, error=message_for(exc)), exc.status
    db.session.commit()
    flash(_("The difference is resolved."), "success")
    return redirect(url_for("backoffice.reconcile_list"))


@bp.post("/reconcile/differences/<id:difference_id>/requery")
@require(Permission.RECONCILE)
def difference_requery(difference_id: int) -> ResponseReturnValue:
    """Ask the channel again about a channel-only payment of an order still open; when it says
    paid, the success is applied through the normal path (补单) and the difference settles."""
    staff = current_staff()
    diff = scoped.get_scoped(db.session, staff, difference_id)
    order = _order(diff)
    channel = channels().get(diff.channel)
    if not _can_requery(diff, order) or channel is None or order is None:
        return _detail(diff, error=_("Only a channel-only payment of an order that is still open "
                                     "can be asked about again.")), 409
    done = reconcile.requery(db.session, context.clock(), channel, diff.id, order.order_no,
                             order.channel_ref, context.settings().zone, staff_id=staff.id)
    flash(_("The channel says it is paid: the payment is applied.") if done else
          _("The channel does not say it is paid; nothing changed."),
          "success" if done else "error")
    return redirect(url_for("backoffice.difference_detail", difference_id=diff.id))
