"""The Flask side of ``portal.kernel.uploads``, shared by the customer site and the back office:
read a form's files (never more than the limit plus one byte each) and send a stored file."""

from __future__ import annotations

import io

from flask import request, send_file
from flask.typing import ResponseReturnValue

from portal.kernel.uploads import PHOTOS, CheckedFile, FileStore, Upload, UploadRules, check_all


def sent_files(field_name: str, rules: UploadRules) -> list[Upload]:
    """The request's files under ``field_name``, unchecked, each read only to the limit plus
    one byte (for a service that checks them with ``check_all`` after its own checks)."""
    return [Upload(f.filename or "", f.read(rules.max_bytes + 1))
            for f in request.files.getlist(field_name)]


def checked_files(field_name: str, rules: UploadRules) -> list[CheckedFile]:
    """The request's files under ``field_name``, checked by content; UploadRefused otherwise."""
    return check_all(sent_files(field_name, rules), rules)


def send_stored(store: FileStore, stored_name: str, content_type: str,
                download_name: str) -> ResponseReturnValue:
    """A stored file (the caller checked who may see it): photos shown inline, anything else
    downloaded, the type always the one found in the bytes when it was stored."""
    return send_file(io.BytesIO(store.read(stored_name)), mimetype=content_type,
                     as_attachment=content_type not in PHOTOS, download_name=download_name,
                     max_age=0)
