"""Self-readings through the mini-program: meters and windows, preview, submit with a photo,
history; refused photos and others' meters."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from decimal import Decimal

from PIL import Image

from tests.portal.miniprogram.conftest import API, LI_MING, WANG_FANG, bearer, signed_in

IN_WINDOW = datetime(2026, 12, 22, 2, 0, tzinfo=UTC)  # 10:00 on 22 Dec in Shanghai


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def upload(client, token, meter_id, value, photo, name="meter.jpg"):  # type: ignore[no-untyped-def]
    return client.post(f"{API}/readings", headers=bearer(token), content_type="multipart/form-data",
                       data={"meter_id": str(meter_id), "value_kwh": value,
                             "photo": (io.BytesIO(photo), name)})


def test_meters_preview_submit_and_history(client, demo, clock):
    clock.set(IN_WINDOW)
    token = signed_in(client, "liming", LI_MING[0])
    (meter,) = client.get(f"{API}/meters", headers=bearer(token)).get_json()["meters"]
    assert meter["account_no"] == LI_MING[1] and meter["window"]["is_open"]

    probe = client.post(f"{API}/readings/preview", headers=bearer(token),
                        json={"meter_id": meter["id"], "value_kwh": "0"}).get_json()
    assert probe["plausible"] is False and probe["warnings"]  # lower than the last reading
    value = str(Decimal(probe["previous_kwh"]) + 300)
    preview = client.post(f"{API}/readings/preview", headers=bearer(token),
                          json={"meter_id": meter["id"], "value_kwh": value}).get_json()
    assert preview["plausible"] and preview["usage_kwh"] == "300.00"
    assert preview["estimate_fen"] > 0

    not_a_photo = upload(client, token, meter["id"], value, b"%PDF-1.4 not an image", "a.pdf")
    assert not_a_photo.status_code == 400
    assert not_a_photo.get_json()["code"] == "upload_type"
    submitted = upload(client, token, meter["id"], value, jpeg())
    assert submitted.status_code == 201, submitted.get_json()
    row = submitted.get_json()
    assert row["status"] == "accepted" and row["value_kwh"] == value and row["reasons"] == []
    again = upload(client, token, meter["id"], value, jpeg())
    assert again.status_code == 409 and again.get_json()["code"] == "reading_exists"
    history = client.get(f"{API}/readings", headers=bearer(token)).get_json()["readings"]
    assert history[0]["id"] == row["id"]


def test_outside_the_window_says_when_it_opens(client, demo):
    token = signed_in(client, "liming", LI_MING[0])  # 3 December: the window opens on the 20th
    (meter,) = client.get(f"{API}/meters", headers=bearer(token)).get_json()["meters"]
    assert meter["window"]["is_open"] is False
    closed = client.post(f"{API}/readings/preview",
                         json={"meter_id": meter["id"], "value_kwh": "1"},
                         headers={**bearer(token), "Accept-Language": "en"})
    assert closed.status_code == 400 and closed.get_json()["code"] == "reading_window_closed"
    assert "20" in closed.get_json()["message"]


def test_another_customers_meter_is_404(client, demo, clock):
    clock.set(IN_WINDOW)
    mine = signed_in(client, "liming", LI_MING[0])
    theirs = signed_in(client, "wangfang", WANG_FANG[0])
    (their_meter,) = client.get(f"{API}/meters", headers=bearer(theirs)).get_json()["meters"]
    preview = client.post(f"{API}/readings/preview", headers=bearer(mine),
                          json={"meter_id": their_meter["id"], "value_kwh": "1"})
    assert preview.status_code == 404
    assert upload(client, mine, their_meter["id"], "1", jpeg()).status_code == 404


def test_a_photo_sent_as_text_is_an_invalid_field_not_a_500(client, demo, clock):
    """``photo`` as a plain form field instead of a file part: the answer names the field."""
    clock.set(IN_WINDOW)
    token = signed_in(client, "liming", LI_MING[0])
    (meter,) = client.get(f"{API}/meters", headers=bearer(token)).get_json()["meters"]
    before = client.get(f"{API}/readings", headers=bearer(token)).get_json()["readings"]
    response = client.post(f"{API}/readings", headers=bearer(token),
                           content_type="multipart/form-data",
                           data={"meter_id": str(meter["id"]), "value_kwh": "1",
                                 "photo": "not a file"})
    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid_request"
    assert response.get_json()["fields"] == ["photo"]
    after = client.get(f"{API}/readings", headers=bearer(token)).get_json()["readings"]
    assert after == before  # nothing was written
