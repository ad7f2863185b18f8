"""Words for domain error codes, in the caller's language (zh_CN by default, en too)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

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
}
