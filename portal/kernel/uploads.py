"""Files people upload (photos, PDFs): judged by their bytes, stored under random names, served by
the caller after its access check. Flask-free; the web layer reads the request and sends files.

A file is accepted when its bytes are one of the allowed kinds (``filetype`` reads the magic
numbers), whatever its name says, and it is not too large. An image must decode to the end with
Pillow and stay under a pixel limit (a "decompression bomb" is refused, never decoded); a PDF
must end with ``%%EOF`` (a PDF header on a truncated or other file is refused). On request
(``Reencode``) an image is stored as a new file made from its pixels: its EXIF (GPS position,
camera) and anything hidden after the picture are dropped, its orientation is applied, and it
may become a JPEG and be scaled down.

The name the person gave is kept only to be shown (its last path component, printable, cut to
length); the stored file gets ``<32 hex digits>.<extension of its real type>`` in one folder, and
only names of that form are ever read back. Refusals are ``UploadRefused`` with a code whose words
(zh/en, naming the file and the limit) are in ``portal.messages``.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import filetype
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from portal.kernel.errors import DomainError, NotFound

JPEG, PNG, PDF = "image/jpeg", "image/png", "application/pdf"
# every kind this module can judge -> the extension its stored file gets, and its name for people
EXTENSIONS = {JPEG: "jpg", PNG: "png", PDF: "pdf"}
LABELS = {JPEG: "JPEG", PNG: "PNG", PDF: "PDF"}
PHOTOS = frozenset({JPEG, PNG})
PHOTOS_AND_PDF = frozenset({JPEG, PNG, PDF})
STORED_NAME = re.compile(r"[0-9a-f]{32}\.(jpg|png|pdf)")
MAX_NAME = 120
_PILLOW_FORMATS = {JPEG: "JPEG", PNG: "PNG"}


# --- refusals (words in portal.messages) -----------------------------------------------------

class UploadRefused(DomainError):
    """Not one of the allowed kinds (``params``: name, kinds)."""

    code = "upload_type"

    def __init__(self, name: str, **params: str | int) -> None:
        super().__init__(name)
        self.params = {"name": name, **params}


class UploadUnreadable(UploadRefused):
    """Starts like an allowed kind but is damaged or cut short (name)."""

    code = "upload_unreadable"


class UploadTooManyPixels(UploadRefused):
    """An image larger than ``megapixels`` million pixels (name, megapixels)."""

    code = "upload_pixels"


class UploadTooLarge(UploadRefused):
    """More bytes than allowed (name, limit: e.g. "3 MB")."""

    code = "upload_size"
    status = 413


class TooManyUploads(UploadRefused):
    """More files than allowed (count)."""

    code = "upload_count"


# --- rules and checks ------------------------------------------------------------------------

@dataclass(frozen=True)
class Reencode:
    """Store a new file made from an image's pixels alone instead of the bytes sent: no EXIF
    (GPS position, phone model), ICC profile or comment survives; the EXIF orientation is
    applied first. ``as_jpeg``: a PNG becomes a JPEG too; ``max_side``: scaled down to fit."""

    as_jpeg: bool = False
    max_side: int | None = None
    jpeg_quality: int = 85


@dataclass(frozen=True)
class UploadRules:
    """What a form accepts; ``reencode``: how images are re-encoded (None: kept as sent)."""

    max_bytes: int
    kinds: frozenset[str] = PHOTOS_AND_PDF
    max_files: int = 1
    max_pixels: int = 40_000_000
    reencode: Reencode | None = None

    def __post_init__(self) -> None:
        if not self.kinds or not self.kinds <= EXTENSIONS.keys():
            raise ValueError(f"unknown upload kinds: {sorted(self.kinds - EXTENSIONS.keys())}")
        if self.max_bytes < 1 or self.max_files < 1 or self.max_pixels < 1:
            raise ValueError("upload limits must be positive")

    @property
    def kinds_label(self) -> str:
        return ", ".join(LABELS[k] for k in EXTENSIONS if k in self.kinds)

    @property
    def limit_label(self) -> str:
        return size_label(self.max_bytes)


@dataclass(frozen=True)
class Upload:
    """What a person sent: the name their device gave and (at most ``max_bytes + 1`` of) the
    bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class CheckedFile:
    original_name: str  # for display only
    content_type: str   # found in the bytes
    extension: str
    data: bytes         # what will be stored (re-encoded if the rules asked for it)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def size_label(size: int) -> str:
    """``3145728`` -> ``"3 MB"``; whole units only (limits are set in MB or KB)."""
    for unit, factor in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= factor:
            return f"{size // factor} {unit}"
    return f"{size} B"


def display_name(filename: str) -> str:
    """The last component of what the browser sent (``../../x.png`` -> ``x.png``), printable
    characters only, no leading dots, at most 120 characters; only shown, never a path."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    return (name or "attachment")[-MAX_NAME:]


def _open_image(data: bytes, name: str, rules: UploadRules) -> Image.Image:
    """The image decoded to its last pixel, or a refusal; nothing larger than the rules'
    pixel limit is decoded (Pillow reads the dimensions from the header first)."""
    try:
        with warnings.catch_warnings():  # Pillow's own bomb limit: refuse, do not decode
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.width * probe.height > rules.max_pixels:
                    raise UploadTooManyPixels(name, megapixels=rules.max_pixels // 1_000_000)
                probe.verify()  # chunk checksums: a PNG header on something else fails here
            image = Image.open(io.BytesIO(data))
            image.load()  # every pixel: a file cut short fails here
            return image
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UploadTooManyPixels(name, megapixels=rules.max_pixels // 1_000_000) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise UploadUnreadable(name) from None


def _reencode(image: Image.Image, content_type: str, how: Reencode) -> tuple[str, bytes]:
    """``(content type, bytes)`` of the pixels alone, encoded again."""
    pixels = ImageOps.exif_transpose(image)
    if how.max_side is not None:
        pixels.thumbnail((how.max_side, how.max_side))
    target = JPEG if how.as_jpeg else content_type
    if target == JPEG and pixels.mode not in ("RGB", "L"):
        pixels = pixels.convert("RGB")
    out = io.BytesIO()
    if target == JPEG:
        pixels.save(out, format="JPEG", quality=how.jpeg_quality, optimize=True)
    else:
        pixels.save(out, format=_PILLOW_FORMATS[target], optimize=True)
    return target, out.getvalue()


def check(upload: Upload, rules: UploadRules) -> CheckedFile:
    """The upload as a file we keep, or an ``UploadRefused`` naming it."""
    name = display_name(upload.filename)
    if len(upload.data) > rules.max_bytes:
        raise UploadTooLarge(name, limit=rules.limit_label)
    kind = filetype.guess(upload.data[:8192]) if upload.data else None
    mime = kind.mime if kind is not None else None
    if mime is None or mime not in rules.kinds:
        raise UploadRefused(name, kinds=rules.kinds_label)
    data = upload.data
    if mime in PHOTOS:
        image = _open_image(data, name, rules)
        try:
            if rules.reencode is not None:
                mime, data = _reencode(image, mime, rules.reencode)
        finally:
            image.close()
    elif b"%%EOF" not in data[-1024:]:
        raise UploadUnreadable(name)
    return CheckedFile(name, mime, EXTENSIONS[mime], data)


def check_all(uploads: Sequence[Upload], rules: UploadRules) -> list[CheckedFile]:
    """Every non-empty upload of a form checked; a refusal of any refuses them all."""
    sent = [u for u in uploads if u.filename or u.data]  # file inputs left empty
    if len(sent) > rules.max_files:
        raise TooManyUploads("", count=rules.max_files)
    return [check(upload, rules) for upload in sent]


# --- the store -------------------------------------------------------------------------------

# Files saved in a session's transaction and not yet committed with it (``FileStore.save``).
_UNCOMMITTED = "dianfei.uncommitted_files"


@event.listens_for(Session, "after_commit")
def _keep_files(session: Session) -> None:
    session.info.pop(_UNCOMMITTED, None)


@event.listens_for(Session, "after_transaction_end")
def _drop_files(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended without a commit (``after_commit`` runs first and
    keeps the files of one that committed): its files go too."""
    if transaction.parent is None:
        for path in session.info.pop(_UNCOMMITTED, ()):
            path.unlink(missing_ok=True)


class FileStore:
    """One folder of stored files, named at random; nothing outside it is ever read."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, checked: CheckedFile, session: Session) -> str:
        """The stored file's name (to keep on the row that owns it, written in ``session``'s
        transaction). The file lives exactly as long as that transaction's writes: it is
        deleted when the transaction ends without a commit (rolled back, or the session closed
        after an error), so a refused or failed request leaves no file behind."""
        session.connection()  # in a transaction (begun if need be): its end decides the file
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{secrets.token_hex(16)}.{checked.extension}"
        with open(self.root / name, "xb") as out:  # never overwrites
            out.write(checked.data)
        session.info.setdefault(_UNCOMMITTED, []).append(self.root / name)
        return name

    def path(self, stored_name: str) -> Path:
        if not STORED_NAME.fullmatch(stored_name):
            raise ValueError(f"not a stored file name: {stored_name!r}")
        return self.root / stored_name

    def read(self, stored_name: str) -> bytes:
        """A stored file's bytes (at most a few MB), for the caller to serve after its access
        check; NotFound if it is gone."""
        try:
            return self.path(stored_name).read_bytes()
        except FileNotFoundError:
            raise NotFound(stored_name) from None
