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
}
