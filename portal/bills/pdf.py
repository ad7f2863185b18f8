"""A bill as a one-page A4 PDF (ReportLab).

Chinese text uses ReportLab's built-in CID font ``STSong-Light`` (the reader supplies the glyphs,
so no font file ships with us); figures use Helvetica, so amounts are plain text in the PDF.
The words come translated from the caller (``labels``), which keeps this module free of Flask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO

from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from portal.accounts.models import ElectricityAccount
from portal.bills.models import Bill
from portal.kernel.money import format_yuan

CJK = "STSong-Light"
FIGURES = "Helvetica"
pdfmetrics.registerFont(UnicodeCIDFont(CJK))

TEXT = ParagraphStyle("text", fontName=CJK, fontSize=9.5, leading=13)
TITLE = ParagraphStyle("title", parent=TEXT, fontSize=16, leading=22, spaceAfter=4 * mm)
RIGHT = ParagraphStyle("right", parent=TEXT, alignment=TA_RIGHT)
SMALL = ParagraphStyle("small", parent=TEXT, fontSize=8, leading=11, textColor=colors.grey)


@dataclass(frozen=True)
class LineRow:
    label: str        # what the line is, translated
    derivation: str   # "100 kWh x 0.538 = 53.80", as the customer can recompute it
    amount_fen: int


def _plain(value: object) -> str:
    """Text for a Paragraph: ReportLab reads a small markup, so escape its specials."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_bill(bill: Bill, account: ElectricityAccount, labels: Mapping[str, str],
                lines: Sequence[LineRow], notes: Sequence[str] = ()) -> bytes:
    """The bill as PDF bytes. ``labels`` needs: title, account, holder, address, period, kwh,
    tariff, due, item, derivation, amount, total, rule."""
    buffer = BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm,
                            topMargin=16 * mm, bottomMargin=16 * mm, title=labels["title"],
                            author="Dianfei", subject=f"{account.account_no} {bill.period}")
    facts = [
        (labels["account"], account.account_no), (labels["holder"], account.holder_name),
        (labels["address"], account.address),
        (labels["period"], f"{bill.period_start.isoformat()} - {bill.period_end.isoformat()}"),
        (labels["kwh"], f"{bill.kwh.normalize():,f} kWh"), (labels["tariff"], bill.tariff_code),
        (labels["due"], bill.due_date.isoformat()),
    ]
    head = Table([[Paragraph(_plain(k), TEXT), Paragraph(_plain(v), TEXT)] for k, v in facts],
                 colWidths=[35 * mm, 139 * mm])
    head.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"),
                              ("TEXTCOLOR", (0, 0), (0, -1), colors.grey)]))
    rows: list[list[object]] = [[Paragraph(_plain(labels["item"]), TEXT),
                                 Paragraph(_plain(labels["derivation"]), TEXT),
                                 Paragraph(_plain(labels["amount"]), RIGHT)]]
    rows += [[Paragraph(_plain(line.label), TEXT), Paragraph(_plain(line.derivation), TEXT),
              f"{format_yuan(line.amount_fen)}"] for line in lines]
    rows.append([Paragraph(_plain(labels["total"]), TEXT), "", f"{format_yuan(bill.total_fen)}"])
    table = Table(rows, colWidths=[62 * mm, 82 * mm, 30 * mm], repeatRows=1)
    table.setStyle(TableStyle([
        ("FONTNAME", (2, 1), (2, -1), FIGURES),
        ("FONTNAME", (2, -1), (2, -1), "Helvetica-Bold"),
        ("ALIGN", (2, 0), (2, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LINEBELOW", (0, 0), (-1, 0), 0.6, colors.black),
        ("LINEABOVE", (0, -1), (-1, -1), 0.6, colors.black),
        ("ROWBACKGROUNDS", (0, 1), (-1, -2), [colors.white, colors.HexColor("#f4f6f9")]),
    ]))
    story: list[object] = [Paragraph(_plain(labels["title"]), TITLE), head, Spacer(1, 6 * mm),
                           table, Spacer(1, 4 * mm), Paragraph(_plain(labels["rule"]), SMALL)]
    story += [Paragraph(_plain(note), TEXT) for note in notes]
    doc.build(story)
    return buffer.getvalue()
