"""Every event of the contract has a template per channel that renders in zh and en with the
contract's params, and every sentence in them is translated."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
from babel.messages.pofile import read_po

from notifications.render import TEMPLATES, TemplateMissing, render
from notifications.service import CHANNELS, EVENTS

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = (ROOT / "notifications" / "contract.md").read_text()
PARAMS = {"account_no": "0100000001", "period": "2026-11", "amount_yuan": "1,234.50",
          "due_date": "2026-12-25", "disconnect_after": "2027-01-20", "order_no": "P1",
          "value_kwh": "312", "reason": "读数小于上期", "dispute_id": 5, "question": "照片？",
          "outcome": "adjusted", "note": "已调整", "message": "正在复核", "plan_id": 7,
          "total_yuan": "1,200.00", "installments": 3, "seq": 2}


def test_the_events_are_the_contracts() -> None:
    table = set(re.findall(r"^\| ([a-z_, ]+) \|", CONTRACT, re.M)) - {"event"}
    events = {e.strip() for row in table for e in row.split(",")}
    assert events == set(EVENTS)
    assert {p.name for p in TEMPLATES.iterdir()} == set(EVENTS)


@pytest.mark.parametrize("event", EVENTS)
def test_every_channel_renders_in_both_languages(event: str) -> None:
    for channel in CHANNELS:
        zh = render(event, channel, "zh_Hans_CN", PARAMS)
        en = render(event, channel, "en", PARAMS)
        assert zh.subject and zh.body and en.subject and en.body
        assert zh.subject != en.subject and "0100000001" in zh.body + str(zh.fields)
        if channel in ("wechat", "sms"):
            assert zh.fields and all(zh.fields.values())


def test_a_missing_param_or_template_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render("bill_issued", "sms", "en", {"account_no": "1"})
    with pytest.raises(TemplateMissing):
        render("bill_issued", "fax", "en", PARAMS)


def test_every_sentence_is_translated() -> None:
    catalog_path = ROOT / "portal/translations/zh_Hans_CN/LC_MESSAGES/messages.po"
    with catalog_path.open("rb") as f:
        translated = {m.id for m in read_po(f) if m.id and m.string}
    used = set()
    for path in TEMPLATES.rglob("*.txt"):
        used |= set(re.findall(r'_\("((?:[^"\\]|\\.)*)"', path.read_text()))
    assert used and not used - translated
