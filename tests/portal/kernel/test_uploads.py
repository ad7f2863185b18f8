"""Uploaded files are judged by their bytes (not their names), kept small and few, stored under
random names in one folder, optionally re-encoded without their EXIF; refusals name the file."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.orm import Session

from portal.kernel import uploads
from portal.kernel.errors import NotFound
from portal.kernel.uploads import FileStore, Upload, UploadRules

RULES = UploadRules(max_bytes=64 * 1024, max_files=3)
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
       b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (8, 8), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, format=fmt, **save)
    return out.getvalue()


def jpeg_with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0110] = "Secret Phone 9"  # camera model
    exif[0x0112] = 6                 # orientation: rotate 90° to show upright
    return image_bytes("JPEG", (40, 20), exif=exif.tobytes())


def png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def a_session() -> Session:
    return Session(sa.create_engine("sqlite://"))


def test_photos_and_pdfs_are_kept_under_random_names_and_read_back(tmp_path) -> None:
    store = FileStore(tmp_path / "files")
    checked = uploads.check_all([Upload("meter.png", image_bytes()),
                                 Upload("IMG_1.JPG", image_bytes("JPEG")),
                                 Upload("账单.pdf", PDF)], RULES)
    assert [(c.content_type, c.extension) for c in checked] == [
        ("image/png", "png"), ("image/jpeg", "jpg"), ("application/pdf", "pdf")]
    session = a_session()
    names = [store.save(c, session) for c in checked]
    session.commit()
    assert all(uploads.STORED_NAME.fullmatch(n) for n in names) and len(set(names)) == 3
    assert store.read(names[0]) == image_bytes() and store.read(names[2]) == PDF
    assert checked[2].original_name == "账单.pdf"
    with pytest.raises(NotFound):
        store.read("0" * 32 + ".png")


@pytest.mark.parametrize("end", ["rollback", "close"])
def test_a_file_lives_only_if_its_transaction_commits(tmp_path, end) -> None:
    """A request that fails after saving a file (its rows rolled back, or the session closed
    after an error) leaves no file behind; one committed later, in a new transaction, stays."""
    store = FileStore(tmp_path / "files")
    checked = uploads.check(Upload("meter.png", image_bytes()), RULES)
    session = a_session()
    lost = store.save(checked, session)
    getattr(session, end)()
    with pytest.raises(NotFound):
        store.read(lost)
    kept = store.save(checked, session)
    session.commit()
    session.rollback()  # a later transaction ending without a commit keeps what was committed
    assert store.read(kept) == image_bytes()
    assert [p.name for p in (tmp_path / "files").iterdir()] == [kept]


@pytest.mark.parametrize(("upload", "code"), [
    (Upload("notes.png", b"just some text, not an image"), "upload_type"),
    (Upload("page.jpg", b"<html><script>alert(1)</script></html>"), "upload_type"),
    (Upload("run.pdf", b"MZ\x90\x00" + b"\x00" * 100), "upload_type"),
    (Upload("anim.png", b"GIF89a" + b"\x00" * 100), "upload_type"),  # a kind not allowed
    (Upload("empty.png", b""), "upload_type"),
    (Upload("fake.png", image_bytes()[:40] + b"\x00" * 200), "upload_unreadable"),
    (Upload("cut.jpg", image_bytes("JPEG", (64, 64))[:300]), "upload_unreadable"),
    (Upload("cut.pdf", PDF[:40]), "upload_unreadable"),  # a PDF header, no end
])
def test_what_is_not_a_whole_photo_or_pdf_is_refused_whatever_its_name(upload, code) -> None:
    with pytest.raises(uploads.UploadRefused) as refused:
        uploads.check(upload, RULES)
    assert refused.value.code == code
    assert refused.value.params["name"] == upload.filename


def test_only_the_kinds_a_form_allows_are_accepted() -> None:
    photos = UploadRules(max_bytes=RULES.max_bytes, kinds=uploads.PHOTOS)
    with pytest.raises(uploads.UploadRefused) as refused:
        uploads.check(Upload("scan.pdf", PDF), photos)
    assert refused.value.params["kinds"] == "JPEG, PNG"
    with pytest.raises(ValueError):
        UploadRules(max_bytes=1024, kinds=frozenset({"image/gif"}))


def test_too_large_and_too_many_are_refused_with_the_limit() -> None:
    with pytest.raises(uploads.UploadTooLarge) as refused:
        uploads.check(Upload("big.png", image_bytes(size=(600, 600))), UploadRules(1024))
    assert refused.value.params == {"name": "big.png", "limit": "1 KB"}
    assert refused.value.status == 413
    with pytest.raises(uploads.TooManyUploads) as refused:
        uploads.check_all([Upload(f"{n}.png", image_bytes()) for n in range(4)], RULES)
    assert refused.value.params["count"] == 3
    # a form's empty file inputs are not files
    assert uploads.check_all([Upload("", b""), Upload("", b"")], UploadRules(1024)) == []
    assert [uploads.size_label(n) for n in (3 << 20, 2048, 100)] == ["3 MB", "2 KB", "100 B"]


@pytest.mark.parametrize("size", [(30000, 30000), (9000, 5000)])
def test_an_image_claiming_huge_dimensions_is_refused_without_decoding(size) -> None:
    # 900 megapixels is past Pillow's own bomb limit; 45 is past ours (40)
    with pytest.raises(uploads.UploadTooManyPixels) as refused:
        uploads.check(Upload("bomb.png", png_claiming(*size)), RULES)
    assert refused.value.params["megapixels"] == 40


def test_path_tricks_in_names_never_become_paths(tmp_path) -> None:
    store = FileStore(tmp_path / "files")
    for name in ("../../etc/passwd.png", "..\\..\\boot.ini.png", "/abs/x.png", ".hidden.png",
                 "a\x00b\n.png", "x" * 300 + ".png"):
        checked = uploads.check(Upload(name, image_bytes()), RULES)
        shown = checked.original_name
        assert "/" not in shown and "\\" not in shown and shown.isprintable()
        assert not shown.startswith(".") and len(shown) <= uploads.MAX_NAME
        assert store.path(store.save(checked, a_session())).parent == tmp_path / "files"
    assert sorted(p.parent for p in tmp_path.rglob("*.png")) == [tmp_path / "files"] * 6
    for bad in ("../x.png", "a/b.png", "0" * 32 + ".html", "/etc/passwd", "0" * 32 + ".png/.."):
        with pytest.raises(ValueError):
            store.path(bad)


def test_images_can_be_reencoded_without_their_exif() -> None:
    sent = jpeg_with_exif()
    kept = uploads.check(Upload("meter.jpg", sent), RULES)
    assert kept.data == sent  # by default the bytes are kept as sent
    assert Image.open(io.BytesIO(kept.data)).getexif().get(0x0110) == "Secret Phone 9"

    rules = UploadRules(max_bytes=RULES.max_bytes, kinds=uploads.PHOTOS,
                        reencode=uploads.Reencode())
    clean = uploads.check(Upload("meter.jpg", sent), rules)
    assert clean.content_type == "image/jpeg" and clean.data != sent
    with Image.open(io.BytesIO(clean.data)) as image:
        assert not image.getexif() and "exif" not in image.info
        assert image.size == (20, 40)  # turned upright before the orientation was dropped
    png = uploads.check(Upload("m.png", image_bytes()), rules)
    assert png.content_type == "image/png" and not Image.open(io.BytesIO(png.data)).getexif()
    # a PDF is never re-encoded
    assert uploads.check(Upload("a.pdf", PDF), UploadRules(1 << 16, reencode=uploads.Reencode())
                         ).data == PDF


def test_a_photo_can_be_made_a_smaller_jpeg() -> None:
    rules = UploadRules(max_bytes=RULES.max_bytes, kinds=uploads.PHOTOS,
                        reencode=uploads.Reencode(as_jpeg=True, max_side=50))
    photo = uploads.check(Upload("meter.png", image_bytes(size=(200, 100))), rules)
    assert (photo.content_type, photo.extension) == ("image/jpeg", "jpg")
    with Image.open(io.BytesIO(photo.data)) as image:
        assert image.format == "JPEG" and image.size == (50, 25)
