"""Meter photos: checked, cleaned and stored where the web server cannot serve them.

* Only JPEG and PNG, at most ``max_bytes`` (the caller reads at most ``max_bytes + 1``).
* The header is read before any pixel: more than ``max_pixels`` (a decompression bomb: a tiny
  file that decodes to gigabytes) is refused without decoding it. Pillow's own guard stays on.
* The image is decoded, turned upright (EXIF orientation) and **re-encoded** as a new JPEG from
  its pixels alone, so no EXIF (GPS position, phone model), ICC or comment survives, and
  nothing the client sent is stored byte for byte.
* Stored as ``<32 random hex>.jpg`` under the photo directory (``DIANFEI_READING_PHOTO_DIR``,
  under instance/, outside the web root); the client's file name is never used. A file name with
  path parts (``../``, ``/``, ``\\``, NUL) is refused outright: no honest phone sends one.
* Served by views that check the reader (owner, or staff of the meter's district), never by a
  static route.
"""

from __future__ import annotations

import io
import re
import secrets
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from portal.kernel.errors import DomainError, NotFound

ALLOWED_FORMATS = frozenset({"JPEG", "PNG"})
KEY_RE = re.compile(r"[0-9a-f]{32}\.jpg")
MAX_SIDE = 2400  # px: larger photos are scaled down (a meter's digits need far fewer)
JPEG_QUALITY = 85


class PhotoRequired(DomainError):
    code = "reading_photo_required"


class PhotoNotImage(DomainError):
    code = "reading_photo_not_image"


class PhotoTooLarge(DomainError):
    code = "reading_photo_too_large"
    status = 413


class PhotoTooManyPixels(DomainError):
    code = "reading_photo_too_many_pixels"


class PhotoBadName(DomainError):
    code = "reading_photo_bad_name"


def check_name(filename: str | None) -> None:
    """Refuse a client file name that tries to name a path."""
    name = filename or ""
    if "/" in name or "\\" in name or "\x00" in name or name.strip() in (".", ".."):
        raise PhotoBadName()


def clean(data: bytes, filename: str | None, *, max_bytes: int, max_pixels: int) -> bytes:
    """The photo as a fresh JPEG without metadata; a ``DomainError`` saying what is wrong."""
    check_name(filename)
    if not data:
        raise PhotoRequired()
    if len(data) > max_bytes:
        raise PhotoTooLarge()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ALLOWED_FORMATS:
                    raise PhotoNotImage()
                width, height = image.size
                if width * height > max_pixels or width < 1 or height < 1:
                    raise PhotoTooManyPixels()
                image.load()
                upright = ImageOps.exif_transpose(image)
                pixels = upright.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoTooManyPixels() from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise PhotoNotImage() from None
    pixels.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    pixels.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue()


def store(directory: Path, jpeg: bytes) -> str:
    """Write a cleaned photo under a new random name; returns its key (the file name)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = f"{secrets.token_hex(16)}.jpg"
    path = directory / key
    with open(path, "xb") as file:  # never overwrite
        file.write(jpeg)
    return key


def path_of(directory: Path, key: str | None) -> Path:
    """The file of a stored key; NotFound for no key, a malformed one, or a missing file."""
    if not key or not KEY_RE.fullmatch(key):
        raise NotFound()
    path = directory / key
    if not path.is_file():
        raise NotFound()
    return path


def discard(directory: Path, key: str | None) -> None:
    """Remove a photo whose reading was not saved (best effort)."""
    if key and KEY_RE.fullmatch(key):
        (directory / key).unlink(missing_ok=True)
