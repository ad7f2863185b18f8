"""The customer's self-reading pages over HTTP: windows, preview, confirm with a photo, history,
refused uploads (nothing written), and who may see a photo."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.extensions import db
from portal.readings.models import Reading, ReadingStatus
from tests.helpers import FormClient, csrf_token, text_of

from .conftest import IN_WINDOW, jpeg, make_world
from .test_photos import huge_png

MAX_BYTES = 60_000


@pytest.fixture
def settings_overrides(photo_dir: Path) -> dict[str, object]:
    return {"reading_photo_dir": photo_dir, "reading_photo_max_bytes": MAX_BYTES}


@dataclass(frozen=True)
class Ids:
    meter: int


@pytest.fixture
def world(app, clock) -> Ids:
    """Built in its own app context: a test holding one open across requests would share
    ``g`` (and its CSRF token) between them."""
    clock.set(IN_WINDOW)
    with app.app_context():
        made = make_world(db.session, clock)
        db.session.commit()
        return Ids(made.meter.id)


def _rows(app, *where) -> list[Reading]:
    with app.app_context():
        rows = list(db.session.scalars(sa.select(Reading).where(*where).order_by(Reading.id)))
        db.session.expunge_all()
        return rows


@pytest.fixture
def signed_in(web: FormClient, world) -> FormClient:
    assert web.login("13900000001", "correct horse 1").status_code == 302
    return web


def _preview(web: FormClient, world, value: str, lang: str = "en"):
    return web.submit(f"/readings/new?lang={lang}", {"meter_id": str(world.meter),
                                                     "value_kwh": value},
                      page=f"/readings/new?meter={world.meter}&lang={lang}")


def _confirm(web: FormClient, world, value: str, photo: bytes, name: str = "meter.jpg"):
    page = web.get(f"/readings/new?meter={world.meter}").get_data(as_text=True)
    return web.client.post("/readings/confirm?lang=en", data={
        "csrf_token": csrf_token(page), "meter_id": str(world.meter), "value_kwh": value,
        "photo": (io.BytesIO(photo), name)}, content_type="multipart/form-data")


def _count(app) -> int:
    return len(_rows(app))


def test_linked_from_the_dashboard(signed_in) -> None:
    assert 'href="/readings"' in signed_in.get("/dashboard").get_data(as_text=True)


def test_preview_then_confirm_then_history(signed_in, world, app, photo_dir) -> None:
    page = text_of(_preview(signed_in, world, "1120.5"))
    assert "120.50 kWh" in page and "¥58.84" in page and "The reading looks right." in page
    assert _count(app) == 1  # a preview writes nothing
    response = _confirm(signed_in, world, "1120.5", jpeg(exif=True))
    assert response.status_code == 302 and response.location == "/readings"
    (row,) = _rows(app, Reading.period == "2026-12")
    assert row.status is ReadingStatus.ACCEPTED
    stored = photo_dir / row.photo_key
    assert stored.is_file() and b"SecretPhoneMaker" not in stored.read_bytes()
    history = text_of(signed_in.get("/readings?lang=en"))
    assert "2026-12" in history and "1,120.50" in history and "Accepted" in history


def test_implausible_reading_warns_in_plain_words_and_is_flagged(signed_in, world) -> None:
    page = text_of(_preview(signed_in, world, "990"))
    assert "would read 990.00 kWh, lower than its last reading of 1000.00 kWh" in page
    zh = text_of(_preview(signed_in, world, "990", lang="zh"))
    assert "低于" in zh
    assert _confirm(signed_in, world, "990", jpeg()).status_code == 302
    history = text_of(signed_in.get("/readings?lang=en"))
    assert "Being checked" in history and "lower than its last reading" in history


def test_bad_numbers_are_told_on_the_field(signed_in, world) -> None:
    response = _preview(signed_in, world, "12a")
    assert response.status_code == 400
    assert "Enter a number such as 1234.5" in text_of(response)
    response = _preview(signed_in, world, "-5")
    assert response.status_code == 400 and "cannot be negative" in text_of(response)
    response = _preview(signed_in, world, "1E30")  # a number, far beyond any meter's dial
    assert response.status_code == 400 and "digits" in text_of(response)


@pytest.mark.parametrize(("value", "words"), [
    ("-1", "cannot be negative"),
    ("", "Enter the number shown on the meter"),
    (None, "Enter the number shown on the meter"),  # the field left out of the post
    ("NaN", "Enter the number shown on the meter"),  # not a number a meter shows
    ("Infinity", "Enter the number shown on the meter"),
    ("1e999999", "digits"),
    ("9" * 100_000, "at most 16 characters"),
])
def test_a_refused_value_on_confirm_is_told_on_the_field(signed_in, world, app, photo_dir,
                                                         value, words) -> None:
    """The service refuses the value only at the confirm step (the preview was skipped or the
    post altered): the customer gets the form back with the reason, nothing is written."""
    page = signed_in.get(f"/readings/new?meter={world.meter}").get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "meter_id": str(world.meter),
            "photo": (io.BytesIO(jpeg()), "meter.jpg")}
    if value is not None:
        data["value_kwh"] = value
    response = signed_in.client.post("/readings/confirm?lang=en", data=data,
                                     content_type="multipart/form-data")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'aria-invalid="true"[^>]*name="value_kwh"|name="value_kwh"[^>]*'
                     r'aria-invalid="true"', html)  # the form is back, the field marked
    assert words is None or words in text_of(response)
    assert _count(app) == 1
    assert not photo_dir.exists() or list(photo_dir.iterdir()) == []


@pytest.mark.parametrize(("photo", "name", "status", "words"), [
    (b"this is a text file, not a photo", "meter.jpg", 400,
     "“meter.jpg” is not a kind of file accepted here (JPEG, PNG)"),
    (b"\xff\xd8" + b"\x00" * MAX_BYTES, "meter.jpg", 413, "“meter.jpg” is larger than 58 KB"),
    (huge_png(), "meter.png", 400, "“meter.png” has too many pixels"),
    (jpeg()[:200], "meter.jpg", 400, "“meter.jpg” is damaged or incomplete"),
    (b"", "meter.jpg", 400, "not a kind of file accepted here"),
    (b"", "", 400, "Add a photo"),  # the file input left empty
])
def test_refused_uploads_write_nothing(signed_in, world, app, photo_dir, photo, name,
                                       status, words) -> None:
    response = _confirm(signed_in, world, "1100", photo, name)
    assert response.status_code == status
    assert words in text_of(response)
    assert 'name="photo"' in response.get_data(as_text=True)  # the form is there to try again
    assert _count(app) == 1
    assert not photo_dir.exists() or list(photo_dir.iterdir()) == []


def test_refusals_are_in_chinese_too(signed_in, world) -> None:
    page = signed_in.get(f"/readings/new?meter={world.meter}").get_data(as_text=True)
    response = signed_in.client.post("/readings/confirm?lang=zh", data={
        "csrf_token": csrf_token(page), "meter_id": str(world.meter), "value_kwh": "1100",
        "photo": (io.BytesIO(b"not a photo"), "meter.jpg")}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert "“meter.jpg”不是此处接受的文件类型" in text_of(response)


def test_a_name_with_path_parts_is_stored_under_a_random_name_in_the_folder(
        signed_in, world, app, photo_dir, tmp_path) -> None:
    """The name's path parts are dropped, not refused: only the photo folder gets a file."""
    response = _confirm(signed_in, world, "1100", jpeg(), "../../../instance/x.jpg")
    assert response.status_code == 302
    (row,) = _rows(app, Reading.period == "2026-12")
    assert re.fullmatch(r"[0-9a-f]{32}\.jpg", row.photo_key)
    assert list(photo_dir.iterdir()) == [photo_dir / row.photo_key]
    assert list(tmp_path.rglob("*.jpg")) == [photo_dir / row.photo_key]
    assert not (photo_dir / "../../../instance/x.jpg").resolve().exists()
    assert not Path("instance/x.jpg").exists()


def test_window_closed_says_when_it_opens(web, world, clock) -> None:
    clock.set(datetime(2026, 12, 3, 2, 0, tzinfo=UTC))
    web.login("13900000001", "correct horse 1")
    assert "opens on December 20, 2026" in text_of(web.get("/readings?lang=en"))
    assert "2026年12月20日" in text_of(web.get("/readings?lang=zh"))
    page = text_of(web.get(f"/readings/new?meter={world.meter}&lang=en"))
    assert "The next reading window opens on December 20, 2026" in page


def test_photo_only_for_its_owner(app, web, world, clock) -> None:
    with app.app_context():
        make_world(db.session, clock, "9900000002", "13900000002", "990000005678")
        db.session.commit()
    web.login("13900000001", "correct horse 1")
    assert _confirm(web, world, "1100", jpeg()).status_code == 302
    (row,) = _rows(app, Reading.period == "2026-12")
    reading_id = row.id
    response = web.get(f"/readings/{reading_id}/photo")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert "no-store" in response.headers["Cache-Control"]
    stranger = FormClient(app.test_client())
    assert stranger.get(f"/readings/{reading_id}/photo").status_code == 302  # sign in first
    stranger.login("13900000002", "correct horse 1")
    assert stranger.get(f"/readings/{reading_id}/photo").status_code == 404
    assert stranger.get(f"/readings/new?meter={world.meter}").status_code == 404
    # a reading without a photo (the utility's) has none to show
    assert web.get(f"/readings/{reading_id - 1}/photo").status_code == 404


def test_garbage_meter_ids_are_not_found(signed_in, world) -> None:
    assert signed_in.get("/readings/new?meter=abc").status_code == 404
    assert signed_in.get("/readings/new").status_code == 404
    page = signed_in.get(f"/readings/new?meter={world.meter}").get_data(as_text=True)
    response = signed_in.client.post("/readings/confirm", data={
        "csrf_token": csrf_token(page), "meter_id": "x", "value_kwh": "1"})
    assert response.status_code == 404


def test_billing_outage_on_confirm_keeps_nothing_and_says_so(signed_in, world, app, photo_dir,
                                                             monkeypatch) -> None:
    from billing_adapter.base import BillingUnavailable
    from portal.web import readings as pages

    class Down:
        def submit_reading(self, submission):
            raise BillingUnavailable("down")

    monkeypatch.setattr(pages, "billing_system", lambda session: Down())
    response = _confirm(signed_in, world, "1100", jpeg())
    assert response.status_code == 503
    assert "The billing system is not answering. Nothing was saved" in text_of(response)
    assert _count(app) == 1 and (not photo_dir.exists() or list(photo_dir.iterdir()) == [])
