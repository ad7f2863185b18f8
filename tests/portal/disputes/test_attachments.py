"""Attachments are judged by their bytes, kept small, few, and stored under random names."""

import pytest

from portal.disputes import attachments
from portal.disputes.attachments import AttachmentStore, Upload

from .helpers import PDF_BYTES, png_bytes

LIMIT = 64 * 1024


def test_images_and_pdfs_are_kept_under_random_names(tmp_path) -> None:
    store = AttachmentStore(tmp_path / "files")
    checked = attachments.check_all([Upload("meter.png", png_bytes()),
                                     Upload("账单.pdf", PDF_BYTES)], LIMIT)
    assert [(c.content_type, c.extension) for c in checked] == [
        ("image/png", "png"), ("application/pdf", "pdf")]
    names = [store.save(c) for c in checked]
    assert all(attachments.STORED_NAME.fullmatch(n) for n in names)
    assert names[0] != "meter.png" and store.path(names[0]).read_bytes() == png_bytes()
    assert checked[1].original_name == "账单.pdf"


@pytest.mark.parametrize("upload", [
    Upload("notes.png", b"just some text, not an image"),
    Upload("page.jpg", b"<html><script>alert(1)</script></html>"),
    Upload("fake.png", png_bytes()[:40] + b"\x00" * 200),  # a PNG header, then garbage
    Upload("run.pdf", b"MZ\x90\x00" + b"\x00" * 100),
    Upload("cut.pdf", PDF_BYTES[:40]),                      # a PDF header, no end
    Upload("empty.png", b""),
])
def test_what_is_not_an_image_or_pdf_is_refused_whatever_its_name(upload) -> None:
    with pytest.raises(attachments.AttachmentRefused) as refused:
        attachments.check(upload, LIMIT)
    assert refused.value.code == "dispute_attachment_type"


def test_too_large_and_too_many_are_refused() -> None:
    with pytest.raises(attachments.AttachmentTooLarge):
        attachments.check(Upload("big.png", png_bytes((600, 600))), 1024)
    with pytest.raises(attachments.TooManyAttachments):
        attachments.check_all([Upload(f"{n}.png", png_bytes()) for n in range(4)], LIMIT)


def test_path_tricks_in_names_never_become_paths(tmp_path) -> None:
    store = AttachmentStore(tmp_path / "files")
    for name in ("../../etc/passwd.png", "..\\..\\boot.ini.png", "/abs/x.png", ".hidden.png"):
        checked = attachments.check(Upload(name, png_bytes()), LIMIT)
        assert "/" not in checked.original_name and "\\" not in checked.original_name
        assert not checked.original_name.startswith(".")
        stored = store.save(checked)
        assert store.path(stored).parent == tmp_path / "files"
    assert sorted(p.parent for p in tmp_path.rglob("*.png")) == [tmp_path / "files"] * 4
    for bad in ("../x.png", "a/b.png", "0" * 32 + ".html", "/etc/passwd"):
        with pytest.raises(ValueError):
            store.path(bad)


def test_an_image_claiming_enormous_dimensions_is_refused() -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # 900 megapixels
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    with pytest.raises(attachments.AttachmentRefused):
        attachments.check(Upload("bomb.png", bomb), LIMIT)
