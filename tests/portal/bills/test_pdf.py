from reportlab import rl_config

from portal.bills.pdf import LineRow, render_bill
from tests import factories

LABELS = {key: key.upper() for key in ("title", "account", "holder", "address", "period", "kwh",
                                       "tariff", "due", "item", "derivation", "amount", "total",
                                       "rule")}


def test_renders_lines_total_and_survives_markup_characters(session, clock,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(rl_config, "pageCompression", 0)
    acct = factories.account(session, clock, holder="<b>Tom & Jerry</b>")
    bill = factories.bill(session, clock, acct, amounts=(11719, 123456))
    rows = [LineRow("TIER 1", "100 kWh x 0.5", 11719), LineRow("TIER 2", "x", 123456)]
    pdf = render_bill(bill, acct, LABELS, rows, notes=["a <note> & more"])
    assert pdf.startswith(b"%PDF-")
    assert b"(117.19) Tj" in pdf and b"(1,234.56) Tj" in pdf and b"(1,351.75) Tj" in pdf
    assert b"9900000001 2026-11" in pdf  # the document's subject
