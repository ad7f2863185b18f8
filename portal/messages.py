"""Words for domain error codes, in the caller's language (zh_CN by default, en too)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from billing_adapter.local.verification import decode

GENERIC = _l("Something in the request was not right. Please check it and try again.")

MESSAGES = {
    "not_found": _l("We could not find that page. It may have been moved, or it is not "
                    "linked to your sign-in."),
    "phone_taken": _l("This phone number already has an account. Sign in instead, or use "
                      "another number."),
    "link_mismatch": _l("The account number, holder name and meter digits do not match our "
                        "records. Check them against a paper bill and try again."),
    "already_linked": _l("This account is already linked to your sign-in."),
    "conflict": _l("Someone changed this at the same time. Reload the page and try again."),
    "staff_username_taken": _l("This username is taken. Choose another."),
    "staff_bad_username": _l("Use 2 to 64 letters, digits, dots, dashes or underscores."),
    "staff_unknown_district": _l("One of the chosen districts does not exist. Reload the page "
                                 "and choose again."),
    "staff_districts_required": _l("Choose at least one district: everyone except "
                                   "administrators works in one or more districts."),
    "staff_weak_password": _l("Use 10 to 128 characters for the password, and not the "
                              "username."),
    "staff_wrong_password": _l("The current password is wrong."),
    "staff_same_password": _l("Choose a password different from the current one."),
    "staff_last_admin": _l("This is the last active administrator. Make someone else an "
                           "administrator first."),
    "payment_nothing_to_pay": _l("There is nothing to pay: choose at least one bill, or enter "
                                 "an amount to add to the prepaid balance."),
    "payment_invalid_amount": _l("Enter an amount in yuan with at most two decimals, e.g. "
                                 "50 or 50.00."),
    "payment_channel_unavailable": _l("The payment channel did not answer. Nothing was "
                                      "charged; please try again in a few minutes."),
    "payment_channel_refused": _l("The payment channel refused this payment. Please try "
                                  "another way to pay."),
    "refund_same_approver": _l("A refund must be approved by a second staff member, not by "
                               "the person who requested it."),
    "refund_too_large": _l("The refund is larger than what is left to refund on this "
                           "payment."),
    "refund_order_not_paid": _l("Only a paid order can be refunded."),
    "refund_channel_not_enabled": _l("The payment channel of this order is not enabled, so "
                                     "the refund could not be sent. Nothing was approved; ask "
                                     "an administrator to enable the channel."),
    "bill_not_in_review": _l("This bill is no longer held for review: someone decided on it "
                             "first. Open the queue again."),
    "bill_review_unknown_meter": _l("That meter is not on this account. Choose one of the "
                                    "account's meters."),
    "bill_review_reading_below_previous": _l("The reading is below the meter's reading of an "
                                             "earlier period. Check the value."),
    "bill_review_no_reading": _l("The period has no accepted reading to bill from."),
    "bill_review_external_billing": _l("Bills are computed by the external billing system: "
                                       "correct the reading there. Nothing was changed here."),
    "audit_bad_cursor": _l("That page link is broken. Start the search again."),
    "dispute_bill_not_issued": _l("This bill is still being reviewed and cannot be disputed "
                                  "yet."),
    "dispute_bill_superseded": _l("This bill was replaced by a corrected version. Open the "
                                  "newest version of the bill to dispute it."),
    "dispute_already_open": _l("This bill already has an open dispute. Follow it on its "
                               "page."),
    "dispute_bad_amount": _l("The disputed amount must be above 0 and at most the bill's "
                             "total."),
    "dispute_bad_assignee": _l("Choose a member of staff who handles disputes in this "
                               "district."),
    "dispute_adjustment_refused": _l("The billing system refused the adjustment (for "
                                     "example, a credit larger than the bill). Nothing was "
                                     "changed."),
    "dispute_attachment_type": _l("Attach only photos (JPEG, PNG) or PDF files; a file that "
                                  "is not one is refused, whatever its name."),
    "dispute_attachment_size": _l("A file is larger than 3 MB. Make the photo smaller and "
                                  "try again."),
    "dispute_attachment_count": _l("Attach at most 3 files."),
}

# Why a bill is held for review (核), for staff; codes and their details come from
# billing_adapter.local.verification (stored in Bill.review_reason as "code key=value ...").
REVIEW_REASONS = {
    "estimated_reading": _l("The reading is an estimate, not a meter reading."),
    "zero_usage": _l("No electricity was used this period (0 kWh)."),
    "usage_low": _l("Usage of %(kwh)s kWh is far below the average of %(average)s kWh over the "
                    "previous %(months)s months."),
    "usage_high": _l("Usage of %(kwh)s kWh is far above the average of %(average)s kWh over the "
                     "previous %(months)s months."),
    "reading_went_down": _l("Meter %(meter)s reads %(current)s kWh, lower than its previous "
                            "reading of %(previous)s kWh, and the meter was not changed."),
    "no_previous_reading": _l("Meter %(meter)s has no earlier reading, so its usage was counted "
                              "from 0."),
    "unknown_tariff": _l("The account's tariff is not in the tariff book; nothing was priced."),
    "cannot_price": _l("The tariff cannot price this usage (not in force for the period, or the "
                       "peak/flat/valley registers do not match it); nothing was priced."),
}


def review_reason_text(stored: str | None) -> list[str]:
    """Each reason of a held bill's ``review_reason`` in the current language."""
    texts = []
    for hold in decode(stored):
        params = dict(hold.detail)
        try:
            texts.append(str(REVIEW_REASONS[hold.reason.value]) % params)
        except KeyError:  # a detail the words need is missing: say the code, do not fail
            texts.append(hold.reason.value)
    return texts


# Payment plans (portal.plans.service)
MESSAGES.update({
    "plan_installment_count": _l("Choose between 2 and 12 installments."),
    "plan_first_due_date": _l("Choose a first due date after today and no later than the "
                              "latest date the form allows."),
    "plan_no_bills": _l("Choose at least one unpaid bill for the plan."),
    "plan_bill_not_owed": _l("One of the chosen bills is already paid or is not a bill of this "
                             "account. Reload the page and choose again."),
    "plan_bill_covered": _l("One of the chosen bills is already in a payment plan that is "
                            "requested or running. Reload the page and choose again."),
    "plan_recent_default": _l("A payment plan of this account was ended for a missed "
                              "installment in the last 12 months, so a new plan cannot be "
                              "requested yet. Please pay the bills or contact your service "
                              "office."),
    "plan_total_too_small": _l("The chosen bills come to less than the smallest amount a plan "
                               "can cover. Please pay them directly."),
    "plan_total_too_large": _l("The chosen bills come to more than a plan can cover online. "
                               "Please contact your service office."),
    "plan_hardship_required": _l("Residents can ask for a payment plan in financial hardship: "
                                 "tick the hardship box and tell us about it."),
    "plan_attachment_type": _l("The attachment must be a PDF, PNG or JPEG file."),
    "plan_attachment_size": _l("The attachment is larger than the form allows."),
    "plan_needs_supervisor": _l("These terms are above the approval threshold: only a "
                                "supervisor can approve or decline them."),
    "plan_terms_expired": _l("The first due date of these terms has passed. Cancel this plan "
                             "and request a new one."),
    "plan_not_next_installment": _l("Pay the installments in order: this is not the next "
                                    "unpaid installment."),
    "plan_not_active": _l("This plan is not running, so there is no installment to pay."),
})
