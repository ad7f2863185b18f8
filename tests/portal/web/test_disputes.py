"""A customer's disputes over HTTP: open one on a bill (with files), follow it, reply, withdraw;
bad input is a 400 with a message; another customer's dispute is a 404 everywhere."""

import io
import re

import pytest
import sqlalchemy as sa

from portal import context
from portal.accounts.models import ElectricityAccount
from portal.backoffice.models import StaffMember
from portal.bills.models import Bill
from portal.demo import DEMO_PASSWORD
from portal.disputes import service
from portal.disputes.models import Dispute, DisputeAttachment, DisputeStatus
from portal.extensions import db
from tests.helpers import text_of
from tests.portal.disputes.helpers import PDF_BYTES, png_bytes


@pytest.fixture
def settings_overrides(tmp_path):
    return {"dispute_attachments_dir": tmp_path / "files"}


def _bill_id(app, account_no: str, period: str = "2026-11") -> int:
    with app.app_context():
        return db.session.scalar(sa.select(Bill.id).join(ElectricityAccount).where(
            ElectricityAccount.account_no == account_no, Bill.period == period))


def _open(web, bill_id: int, **fields):
    data = {"category": "reading", "description": "上月读数明显偏高", "amount": "",
            "files": [], **fields}
    return web.submit(f"/bills/{bill_id}/dispute", data)


def test_customer_opens_a_dispute_with_files_and_sees_its_timeline(app, web, demo,
                                                                   tmp_path) -> None:
    web.login("13800000002", DEMO_PASSWORD)
    bill_id = _bill_id(app, "1100000002")
    assert "对此账单提出异议" in text_of(web.get(f"/bills/{bill_id}"))
    response = _open(web, bill_id, amount="50.5",
                     files=[(io.BytesIO(png_bytes()), "电表.png"),
                            (io.BytesIO(PDF_BYTES), "../../票据.pdf")])
    assert response.status_code == 302
    page = text_of(web.get(response.location))
    assert "已受理" in page and "¥50.50" in page and "2026-12-10" in page  # 5 working days
    assert "电表.png" in page and "票据.pdf" in page
    with app.app_context():
        dispute = db.session.scalar(sa.select(Dispute))
        files = db.session.scalars(sa.select(DisputeAttachment)
                                   .order_by(DisputeAttachment.id)).all()
        assert dispute.disputed_fen == 5050 and dispute.status is DisputeStatus.OPEN
        stored = [f.stored_name for f in files]
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == sorted(stored)
    html = web.get(response.location).get_data(as_text=True)
    links = re.findall(r'href="(/disputes/\d+/attachments/\d+)"', html)
    image = web.get(links[0])
    assert image.status_code == 200 and image.mimetype == "image/png"
    assert image.get_data() == png_bytes()
    pdf = web.get(links[1])
    assert pdf.mimetype == "application/pdf" and "attachment" in pdf.headers[
        "Content-Disposition"]
    # the bill page now points at the dispute instead of offering a second one
    bill_page = text_of(web.get(f"/bills/{bill_id}"))
    assert f"异议 #{dispute.id}" in bill_page and "对此账单提出异议" not in bill_page
    assert "#" + str(dispute.id) in text_of(web.get("/disputes"))


@pytest.mark.parametrize(("fields", "message"), [
    ({"description": ""}, "请说明账单哪里有问题"),
    ({"amount": "12.345"}, "请输入以元为单位的金额"),
    ({"amount": "99999"}, "争议金额"),
    ({"files": [(b"<html>hi</html>", "photo.png")]}, "照片"),
    ({"files": [(png_bytes(), f"{n}.png") for n in range(4)]}, "最多 3 个"),
])
def test_bad_input_is_refused_with_a_message_and_nothing_written(app, web, demo, tmp_path,
                                                                 fields, message) -> None:
    web.login("13800000002", DEMO_PASSWORD)
    if "files" in fields:  # fresh streams for every run of the parameters
        fields = {"files": [(io.BytesIO(data), name) for data, name in fields["files"]]}
    response = _open(web, _bill_id(app, "1100000002"), **fields)
    assert response.status_code == 400
    assert message in text_of(response)
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Dispute)) == 0
    assert not (tmp_path / "files").exists() or not any((tmp_path / "files").iterdir())


def test_a_request_failing_after_its_files_were_saved_leaves_none(app, web, demo, tmp_path,
                                                                  monkeypatch) -> None:
    """The files are written before the rows that name them; when the request then fails (here
    the audit write), its transaction is rolled back and the files go with it."""
    web.login("13800000002", DEMO_PASSWORD)
    bill_id = _bill_id(app, "1100000002")

    def failing(*_args, **_kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(service, "_audit", failing)
    response = _open(web, bill_id, files=[(io.BytesIO(png_bytes()), "电表.png")])
    assert response.status_code == 500
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Dispute)) == 0
    assert not any((tmp_path / "files").iterdir())


def test_an_oversized_file_is_refused(app, web, demo) -> None:
    settings = app.extensions[context.SETTINGS_KEY]
    app.extensions[context.SETTINGS_KEY] = settings.model_copy(
        update={"dispute_attachment_max_bytes": 2048})  # small, so the test client needs no
    web.login("13800000002", DEMO_PASSWORD)            # temporary file for the upload
    big = png_bytes((64, 64)) + b"\x00" * 4096
    response = _open(web, _bill_id(app, "1100000002"), files=[(io.BytesIO(big), "big.png")])
    assert response.status_code == 413 and "“big.png”超过 2 KB" in text_of(response)


def test_others_disputes_and_files_are_404(app, web, demo) -> None:
    web.login("13800000002", DEMO_PASSWORD)
    _open(web, _bill_id(app, "1100000002"), files=[(io.BytesIO(png_bytes()), "a.png")])
    with app.app_context():
        dispute_id = db.session.scalar(sa.select(Dispute.id))
        file_id = db.session.scalar(sa.select(DisputeAttachment.id))
    web.submit("/logout", {}, page="/dashboard")
    web.login("13800000003", DEMO_PASSWORD)  # 陈静, another customer
    for url in (f"/disputes/{dispute_id}", f"/disputes/{dispute_id}/attachments/{file_id}"):
        assert web.get(url).status_code == 404, url
    for url in (f"/disputes/{dispute_id}/reply", f"/disputes/{dispute_id}/withdraw"):
        assert web.submit(url, {"body": "x"}, page="/disputes").status_code == 404, url
    assert web.get(f"/bills/{_bill_id(app, '1100000001')}/dispute").status_code == 404
    assert "#" not in text_of(web.get("/disputes")).split("我的异议", 2)[-1]


def test_customer_replies_when_asked_and_can_withdraw(app, web, demo, clock) -> None:
    web.login("13800000002", DEMO_PASSWORD)
    response = _open(web, _bill_id(app, "1100000002"))
    url = response.location
    # nobody asked yet: no reply form, and a reply is refused
    assert "回复我们的问题" not in text_of(web.get(url))
    assert web.submit(f"{url}/reply", {"body": "hello"}, page=url).status_code == 409
    with app.app_context():
        staff = db.session.scalar(sa.select(StaffMember).where(
            StaffMember.username == "bj-auditor"))
        dispute = db.session.scalar(sa.select(Dispute))
        service.assign(db.session, clock, staff, dispute, staff.id)
        service.request_info(db.session, clock, staff, dispute, "请拍一张电表读数的照片")
        db.session.commit()
    page = text_of(web.get(url))
    assert "请拍一张电表读数的照片" in page and "等待您的回复" in page
    reply = web.submit(f"{url}/reply", {"body": "照片已上传",
                                        "files": [(io.BytesIO(png_bytes()), "m.png")]},
                       page=url)
    assert reply.status_code == 302
    page = text_of(web.get(url))
    assert "照片已上传" in page and "处理中" in page and "m.png" in page
    assert web.submit(f"{url}/withdraw", {"reason": "已电话解决"}, page=url).status_code == 302
    page = text_of(web.get(url))
    assert "已撤回" in page and "撤回异议" not in page


def test_a_file_is_served_only_under_its_own_dispute(app, web, demo, clock, tmp_path) -> None:
    from tests.portal.backoffice.staffing import dispute_with_file

    with app.app_context():  # 陈静's dispute, with a file
        _theirs, their_file = dispute_with_file(db.session, clock, "3300000001",
                                                tmp_path / "files")
    web.login("13800000002", DEMO_PASSWORD)
    mine = _open(web, _bill_id(app, "1100000002")).location
    assert web.get(f"{mine}/attachments/{their_file}").status_code == 404


def test_empty_reply_and_second_withdrawal_are_refused(app, web, demo) -> None:
    web.login("13800000002", DEMO_PASSWORD)
    url = _open(web, _bill_id(app, "1100000002")).location
    assert web.submit(f"{url}/reply", {"body": ""}, page=url).status_code == 400
    assert web.submit(f"{url}/withdraw", {"reason": "x" * 600}, page=url).status_code == 400
    assert web.submit(f"{url}/withdraw", {}, page=url).status_code == 302
    again = web.submit(f"{url}/withdraw", {}, page="/disputes")
    assert again.status_code == 409 and "已撤回" in text_of(again)
