"""Words for domain error codes, in the caller's language (zh_CN by default, en too)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from billing_adapter.local.verification import decode
from portal.readings.rules import decode as decode_flags

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
    "request_nul_character": _l("The address or a field of this request contains an invisible "
                                "NUL character (code 0), which is never valid here. Remove it, "
                                "for example by typing the text again, and try again."),
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
    # Self-reported meter readings (portal.readings)
    "reading_window_closed": _l("Meter readings cannot be submitted today. The next reading "
                                "window opens on %(date)s."),
    "reading_exists": _l("This meter already has a reading for this month. You can send a new "
                         "one only if that reading is rejected."),
    "reading_reason_required": _l("Write the reason: the customer will read it."),
    "reading_already_decided": _l("Someone has already decided on this reading. Reload the "
                                  "queue."),
    "reading_billing_unavailable": _l("The billing system is not answering. Nothing was saved; "
                                      "please try again in a few minutes."),
    "reading_billing_refused": _l("The billing system refused this reading (%(code)s). Nothing "
                                  "was changed: correct the value or reject the reading."),
    "reading_value_required": _l("Enter the number shown on the meter, in kWh."),
    "reading_value_negative": _l("A meter reading cannot be negative."),
    "reading_value_decimals": _l("Enter at most two decimals, e.g. 1234.56."),
    "reading_value_too_many_digits": _l("That has more digits than the meter shows. Check the "
                                        "number again."),
    "reading_value_not_number": _l("Enter a number such as 1234.5 (digits and one decimal "
                                   "point)."),
    "reading_registers_not_tou": _l("This meter has no peak/flat/valley registers: enter only "
                                    "the total."),
    "reading_register_unknown": _l("This meter is not read on that register; leave it empty."),
    "reading_registers_do_not_add_up": _l("Peak, flat and valley must add up to the total."),
    "reading_photo_required": _l("Add a photo of the meter's display."),
    "reading_bad_period": _l("The period must be a month written YYYY-MM, e.g. 2026-11."),
    "reading_bad_date": _l("The date must be written YYYY-MM-DD, e.g. 2026-11-30."),
    "reading_unknown_meter": _l("There is no such meter on this account."),
    "reading_missing_column": _l("This value is missing or too long."),
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


# Why a self-reading is flagged: the plain warning a customer sees before confirming, and what
# staff see in the queue (codes from portal.readings.rules).
READING_FLAGS = {
    "tou_sum_mismatch": _l("Peak, flat and valley add up to %(sum)s kWh, but the total register "
                           "reads %(total)s kWh."),
    "reading_went_down": _l("Meter %(meter)s would read %(current)s kWh, lower than its last "
                            "reading of %(previous)s kWh."),
    "no_previous_reading": _l("Meter %(meter)s has no earlier reading to compare with."),
    "usage_high": _l("This means %(kwh)s kWh used, far more than your average of %(average)s kWh "
                     "over the last %(months)s months."),
    "usage_low": _l("This means %(kwh)s kWh used, far less than your average of %(average)s kWh "
                    "over the last %(months)s months."),
    "billing_rejected": _l("The billing system did not take the reading (%(code)s)."),
}


def reading_flag_text(stored: str | None) -> list[str]:
    """Each reason a reading is flagged, in the current language."""
    texts = []
    for flag in decode_flags(stored):
        try:
            texts.append(str(READING_FLAGS[flag.code]) % dict(flag.detail))
        except KeyError:
            texts.append(flag.code)
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
    "plan_needs_supervisor": _l("These terms are above the approval threshold: only a "
                                "supervisor can approve or decline them."),
    "plan_terms_expired": _l("The first due date of these terms has passed. Cancel this plan "
                             "and request a new one."),
    "plan_not_next_installment": _l("Pay the installments in order: this is not the next "
                                    "unpaid installment."),
    "plan_not_active": _l("This plan is not running, so there is no installment to pay."),
})

# Uploaded files (portal.kernel.uploads): params name, kinds, limit, megapixels, count
MESSAGES.update({
    "upload_type": _l("“%(name)s” is not a kind of file accepted here (%(kinds)s). Files are "
                      "judged by their content, not their name: attach a photo or a scan saved "
                      "as one of these kinds."),
    "upload_unreadable": _l("“%(name)s” is damaged or incomplete and cannot be opened. "
                            "Save or scan it again and attach the new file."),
    "upload_pixels": _l("“%(name)s” has too many pixels (at most %(megapixels)s "
                        "million). Make the photo smaller and try again."),
    "upload_size": _l("“%(name)s” is larger than %(limit)s. Make it smaller and try "
                      "again."),
    "upload_count": _l("Attach at most %(count)s files."),
})
