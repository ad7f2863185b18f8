"""Meter photos through the shared upload rules (``service.photo_rules``): what is refused, what
is kept of what is accepted, and where it is stored.

A file name with path parts is no longer refused (``portal.kernel.uploads`` keeps only its last
component, for display): the stored name is random and nothing lands outside the photo folder."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.orm import Session

from portal.kernel import uploads
from portal.kernel.uploads import Upload, check_all
from portal.readings import service
from portal.settings import Settings

from .conftest import jpeg

MAX_BYTES = 200_000


@pytest.fixture
def rules(tmp_path: Path) -> uploads.UploadRules:
    return service.photo_rules(Settings(reading_photo_dir=tmp_path,
                                        reading_photo_max_bytes=MAX_BYTES,
                                        reading_photo_max_pixels=4_000_000))


def huge_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A valid PNG header claiming 1.6 gigapixels, in a few dozen bytes (a decompression bomb
    needs only the header to be refused)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def _one(data: bytes, name: str, rules: uploads.UploadRules) -> uploads.CheckedFile:
    (checked,) = check_all([Upload(name, data)], rules)
    return checked


def test_exif_is_stripped_and_the_photo_re_encoded(rules) -> None:
    original = jpeg(exif=True)
    assert b"SecretPhoneMaker" in original
    cleaned = _one(original, "IMG_0001.JPG", rules)
    assert b"SecretPhoneMaker" not in cleaned.data and b"Exif" not in cleaned.data
    assert cleaned.data != original
    with Image.open(io.BytesIO(cleaned.data)) as image:
        assert image.format == "JPEG" and image.size == (64, 48)
        assert not image.getexif()


def test_png_is_accepted_and_stored_as_jpeg(rules) -> None:
    out = io.BytesIO()
    Image.new("RGBA", (30, 20), (0, 0, 0, 0)).save(out, "PNG")
    cleaned = _one(out.getvalue(), "meter.png", rules)
    assert cleaned.content_type == uploads.JPEG and cleaned.data[:3] == b"\xff\xd8\xff"


def test_large_photos_are_scaled_down(rules) -> None:
    with Image.open(io.BytesIO(_one(jpeg((2600, 1300)), "big.jpg", rules).data)) as image:
        assert image.size == (2400, 1200)


@pytest.mark.parametrize(("data", "name", "error"), [
    (b"%PDF-1.4 not a photo\n%%EOF", "meter.jpg", uploads.UploadRefused),
    (b"GIF89a" + b"\x00" * 40, "meter.gif", uploads.UploadRefused),
    (b"", "meter.jpg", uploads.UploadRefused),
    (jpeg()[:200], "meter.jpg", uploads.UploadUnreadable),           # truncated
    (b"\xff" * (MAX_BYTES + 1), "meter.jpg", uploads.UploadTooLarge),
    (huge_png(), "meter.png", uploads.UploadTooManyPixels),
])
def test_refused(rules, data, name, error) -> None:
    with pytest.raises(error) as refused:
        check_all([Upload(name, data)], rules)
    assert type(refused.value) is error


def test_more_pixels_than_allowed_are_refused_before_decoding(rules) -> None:
    out = io.BytesIO()
    Image.new("L", (3000, 3000)).save(out, "PNG")  # 9 MP, a few kB
    with pytest.raises(uploads.UploadTooManyPixels):
        check_all([Upload("x.png", out.getvalue())], rules)


def test_one_photo_only_and_an_empty_input_is_no_photo(rules) -> None:
    with pytest.raises(uploads.TooManyUploads):
        check_all([Upload("a.jpg", jpeg()), Upload("b.jpg", jpeg())], rules)
    assert check_all([Upload("", b"")], rules) == []


@pytest.mark.parametrize("name", ["../../etc/cron.d/x.jpg", "..\\..\\boot.ini", "/etc/passwd",
                                  "..", "a\x00.jpg"])
def test_path_tricks_in_the_name_store_nothing_outside_the_folder(tmp_path, rules,
                                                                  name) -> None:
    folder = tmp_path / "photos"
    key = service.photo_store(Settings(reading_photo_dir=folder)).save(_one(jpeg(), name, rules),
                                                                       Session(sa.create_engine("sqlite://")))
    assert uploads.STORED_NAME.fullmatch(key) and key.endswith(".jpg")
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [key]
    assert (folder / key).is_file()
