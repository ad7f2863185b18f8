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
}
