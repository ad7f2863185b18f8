"""Files customers attach to a dispute: checked by content, stored outside the web root.

A file is accepted when its bytes are a JPEG, PNG or PDF (``filetype`` reads the magic numbers;
an image must also decode with Pillow), whatever its name says, and it is not too large. It is
stored under the instance folder with a random name and the extension of its real type; the
name the customer gave is kept only to be shown (its last path component, cut to length).
Files are served by the attachment's id after the caller's access check, never by a name from
the request.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

import filetype
from PIL import Image, UnidentifiedImageError

from portal.kernel.errors import DomainError

MAX_FILES = 3
# detected MIME type -> the extension the stored file gets
ALLOWED = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(jpg|png|pdf)")
MAX_NAME = 120


class AttachmentRefused(DomainError):
    """``code`` says why: not an image or PDF, too large, or too many files."""

    code = "dispute_attachment_type"


class AttachmentTooLarge(AttachmentRefused):
    code = "dispute_attachment_size"


class TooManyAttachments(AttachmentRefused):
    code = "dispute_attachment_count"


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass(frozen=True)
class CheckedFile:
    original_name: str
    content_type: str
    extension: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def display_name(filename: str) -> str:
    """The last component of what the browser sent (``../../x.png`` -> ``x.png``), no control
    characters, at most 120 characters; only ever shown, never a path."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return (name or "attachment")[-MAX_NAME:]


def check(upload: Upload, max_bytes: int) -> CheckedFile:
    """The upload as a file we keep, or AttachmentRefused naming the file."""
    name = display_name(upload.filename)
    if len(upload.data) > max_bytes:
        raise AttachmentTooLarge(name)
    kind = filetype.guess(upload.data[:8192]) if upload.data else None
    mime = kind.mime if kind is not None else None
    if mime not in ALLOWED:
        raise AttachmentRefused(name)
    if mime.startswith("image/"):
        try:
            with warnings.catch_warnings():  # a "decompression bomb" is refused, not opened
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(upload.data)) as image:
                    image.verify()  # a PNG header on something else fails here
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
                Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise AttachmentRefused(name) from None
    elif b"%%EOF" not in upload.data[-1024:]:  # a PDF header on a truncated or other file
        raise AttachmentRefused(name)
    return CheckedFile(name, mime, ALLOWED[mime], upload.data)


def check_all(uploads: list[Upload], max_bytes: int) -> list[CheckedFile]:
    uploads = [u for u in uploads if u.filename or u.data]  # empty file inputs
    if len(uploads) > MAX_FILES:
        raise TooManyAttachments(str(len(uploads)))
    return [check(upload, max_bytes) for upload in uploads]


class AttachmentStore:
    """A folder of stored files, named at random; nothing outside it is ever read."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, checked: CheckedFile) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{secrets.token_hex(16)}.{checked.extension}"
        with open(self.root / name, "xb") as out:  # never overwrites
            out.write(checked.data)
        return name

    def path(self, stored_name: str) -> Path:
        if not STORED_NAME.fullmatch(stored_name):
            raise ValueError(f"not a stored attachment name: {stored_name!r}")
        return self.root / stored_name
