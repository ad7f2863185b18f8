"""Photo checks, pure: what is refused, and what is kept of what is accepted."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from portal.readings import photos

from .conftest import jpeg

LIMITS = {"max_bytes": 200_000, "max_pixels": 4_000_000}


def huge_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header claiming 1.6 gigapixels, in a few dozen bytes (a decompression bomb
    needs only the header to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def test_exif_is_stripped_and_the_photo_re_encoded() -> None:
    original = jpeg(exif=True)
    assert b"SecretPhoneMaker" in original
    cleaned = photos.clean(original, "IMG_0001.JPG", **LIMITS)
    assert b"SecretPhoneMaker" not in cleaned and b"Exif" not in cleaned
    with Image.open(io.BytesIO(cleaned)) as image:
        assert image.format == "JPEG" and image.size == (64, 48)
        assert not image.getexif()


def test_png_is_accepted_and_stored_as_jpeg() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(out, "PNG")
    assert photos.clean(out.getvalue(), "meter.png", **LIMITS)[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(("data", "name", "error"), [
    (b"%PDF-1.4 not a photo", "meter.jpg", photos.PhotoNotImage),
    (b"GIF89a" + b"\x00" * 40, "meter.gif", photos.PhotoNotImage),
    (jpeg()[:200], "meter.jpg", photos.PhotoNotImage),           # truncated
    (b"", "meter.jpg", photos.PhotoRequired),
    (b"\xff" * 200_001, "meter.jpg", photos.PhotoTooLarge),
    (huge_png(), "meter.png", photos.PhotoTooManyPixels),
    (jpeg(), "../../etc/cron.d/x.jpg", photos.PhotoBadName),
    (jpeg(), "..\\..\\boot.ini", photos.PhotoBadName),
    (jpeg(), "/etc/passwd", photos.PhotoBadName),
    (jpeg(), "..", photos.PhotoBadName),
])
def test_refused(data, name, error) -> None:
    with pytest.raises(error):
        photos.clean(data, name, **LIMITS)


def test_more_pixels_than_allowed_are_refused_before_decoding() -> None:
    out = io.BytesIO()
    Image.new("L", (3000, 3000)).save(out, "PNG")  # 9 MP, a few kB
    with pytest.raises(photos.PhotoTooManyPixels):
        photos.clean(out.getvalue(), "x.png", **LIMITS)


def test_stored_under_a_random_name_and_found_only_by_its_key(tmp_path) -> None:
    key = photos.store(tmp_path, photos.clean(jpeg(), "meter.jpg", **LIMITS))
    assert photos.KEY_RE.fullmatch(key)
    assert photos.path_of(tmp_path, key) == tmp_path / key
    for bad in (None, "", "../x.jpg", key.replace(".jpg", ".png"), "0" * 32 + ".jpg"):
        with pytest.raises(photos.NotFound):
            photos.path_of(tmp_path, bad)
