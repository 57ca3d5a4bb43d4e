"""Real documents for tests: multi-page PDFs rendered with reportlab."""

from __future__ import annotations

import io
import textwrap


def make_pdf(pages: list[str], *, title: str = "Test document") -> bytes:
    """A real PDF with one text page per entry (wrapped at 90 columns)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.setTitle(title)
    for text in pages:
        y = 800
        for paragraph in text.split("\n"):
            for line in textwrap.wrap(paragraph, 90) or [""]:
                pdf.drawString(40, y, line)
                y -= 14
                if y < 40:
                    pdf.showPage()
                    y = 800
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


HANDBOOK_PAGES = [
    "Employee handbook. Welcome to the company. This handbook explains our policies and benefits.",
    "Vacation policy. Every employee receives twenty-five days of paid vacation per year. "
    "Unused vacation days can be carried over until the end of March of the following year.",
    "Expense reimbursement. Submit receipts for travel, lodging and meals within thirty days. "
    "The finance team reimburses approved expenses with the next monthly payroll.",
    "Security policy. Laptops must use full-disk encryption and a screen lock after five minutes. "
    "Report lost devices to the IT helpdesk immediately.",
    "Parental leave. New parents are entitled to sixteen weeks of paid parental leave, "
    "which can be taken in up to three separate blocks during the first two years.",
]
