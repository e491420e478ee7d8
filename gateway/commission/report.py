"""The commissioning report: one HTML page and the same as PDF, with results, versions and config hash.

PDF: fpdf2 (pure Python, wheels for every platform the box runs on, arm64 included; its only compiled
dependency is Pillow, which has arm64 wheels too). Chromium's --print-to-pdf would need a browser on the
box; the Pi image has none. Chinese needs a font with CJK glyphs: the first of FONT_CANDIDATES found on the
machine is embedded as a fallback behind DejaVu Sans for Latin text (Debian: fonts-dejavu-core, and
fonts-droid-fallback, fonts-noto-cjk or fonts-wqy-*); without them the PDF is written in English (the
result says which) and the HTML stays in the chosen language.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.commission.checks import Check
from gateway.i18n import ENGLISH, _, speaking

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)
LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)
PACKAGES = ("fieldgate", "pymodbus", "aiomqtt", "pydantic", "cryptography", "h11", "babel", "fpdf2",
            "onnxruntime", "opencv-python-headless")


@dataclass
class Commissioning:
    gateway_id: str
    gateway_name: str
    config_path: str
    config_sha256: str
    by: str
    started: float
    finished: float
    checks: list[Check]
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every check that could be told passed (unknowns are listed, not failures)."""
        return all(c.ok is not False for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway_id, "config": self.config_path, "config_sha256": self.config_sha256,
                "by": self.by, "started": self.started, "finished": self.finished, "passed": self.passed,
                "versions": self.versions, "checks": [c.to_json() for c in self.checks]}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}"}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def config_sha256(path: str | None, fallback: bytes) -> str:
    try:
        data = Path(path).read_bytes() if path else fallback
    except OSError:
        data = fallback
    return hashlib.sha256(data).hexdigest()


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))


def verdict(ok: bool | None) -> str:
    return _("pass") if ok else (_("FAIL") if ok is False else _("unknown"))


def _rows(run: Commissioning) -> list[tuple[str, str, str, str, str]]:
    sections = {"devices": _("Devices answer with plausible values"), "links": _("Links connect"),
                "broadcast": _("Broadcast outputs (Test through the interlock, read-back)"), "clock": _("Clock")}
    return [(sections.get(c.section, c.section), c.subject, verdict(c.ok), _(c.summary).format(**dict(c.args)),
             c.detail) for c in run.checks]


def _facts(run: Commissioning) -> list[tuple[str, str]]:
    return [(_("gateway"), f"{run.gateway_id} {run.gateway_name}".strip()), (_("config file"), run.config_path),
            (_("config SHA-256"), run.config_sha256), (_("run by"), run.by),
            (_("started"), _when(run.started)), (_("finished"), _when(run.finished)),
            (_("result"), _("PASSED") if run.passed else _("NOT PASSED")),
            (_("versions"), ", ".join(f"{k} {v}" for k, v in run.versions.items()))]


def render_html(run: Commissioning, language: str) -> str:
    with speaking(language):
        title = _("Commissioning report")
        facts = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in _facts(run))
        head = "".join(f"<th>{html.escape(h)}</th>" for h in (_("check"), _("subject"), _("result"), _("finding"),
                                                              _("detail")))
        rows = "".join("<tr class=\"{}\">{}</tr>".format(
            "pass" if c.ok else ("fail" if c.ok is False else "unknown"),
            "".join(f"<td>{html.escape(cell)}</td>" for cell in row)) for c, row in zip(run.checks, _rows(run),
                                                                                         strict=True))
        note = _("Recorded in the broadcast audit chain with this file's SHA-256 (fieldgate alert verify-audit).")
    return f"""<!doctype html>
<html lang="{language.replace('_', '-')}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px/1.4 sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
th,td{{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}}
tr.pass td:nth-child(3){{color:#1f8a3b}}tr.fail td:nth-child(3){{color:#c62828;font-weight:700}}
tr.unknown td:nth-child(3){{color:#b26a00}}</style></head><body>
<h1>{html.escape(title)}</h1><table class="facts">{facts}</table>
<table class="checks"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
<p>{html.escape(note)}</p></body></html>
"""


def _first(paths: Sequence[str]) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None)


def render_pdf(run: Commissioning, language: str) -> tuple[bytes, str]:
    """The report as PDF, and the language it was written in (English when the fonts for it are missing)."""
    from fpdf import FPDF

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its subsetter logs every table at INFO
    latin, cjk = _first(LATIN_FONTS), _first(FONT_CANDIDATES)
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    family = "helvetica"
    if latin is not None:
        for style in ("", "B"):  # table headings are bold; one weight is enough
            pdf.add_font("latin", style=style, fname=latin)
        family = "latin"
        if cjk is not None:  # CJK fonts often lack Latin glyphs: Latin first, CJK for what it lacks
            for style in ("", "B"):
                pdf.add_font("cjk", style=style, fname=cjk)
            pdf.set_fallback_fonts(["cjk"])
    if language != ENGLISH and (latin is None or cjk is None):
        language = ENGLISH
    with speaking(language):
        pdf.set_font(family, size=16)
        pdf.cell(0, 10, _text(_("Commissioning report"), family), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, size=9)
        with pdf.table(col_widths=(35, 145), first_row_as_headings=False, text_align="LEFT") as table:
            for key, value in _facts(run):
                table.row([_text(key, family), _text(value, family)])
        pdf.ln(4)
        headings = (_("check"), _("subject"), _("result"), _("finding"), _("detail"))
        with pdf.table(col_widths=(32, 34, 16, 56, 42), text_align="LEFT") as table:
            table.row([_text(h, family) for h in headings])
            for row in _rows(run):
                table.row([_text(cell, family) for cell in row])
        pdf.ln(3)
        pdf.multi_cell(0, 5, _text(_("Recorded in the broadcast audit chain with this file's SHA-256 "
                                     "(fieldgate alert verify-audit)."), family))
    return bytes(pdf.output()), language


def _text(value: str, family: str) -> str:
    """Core PDF fonts hold Latin-1 only: elsewhere a character they lack becomes '?', never an error."""
    return value if family != "helvetica" else value.encode("latin-1", "replace").decode("latin-1")


def write_report(run: Commissioning, out_dir: Path, language: str) -> dict[str, Any]:
    """HTML and PDF side by side; returns their paths and SHA-256 sums."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"commission-{run.gateway_id}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(run.finished))}"
    html_path, pdf_path = out_dir / f"{stem}.html", out_dir / f"{stem}.pdf"
    html_bytes = render_html(run, language).encode("utf-8")
    pdf_bytes, pdf_language = render_pdf(run, language)
    for path, data in ((html_path, html_bytes), (pdf_path, pdf_bytes)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return {"html": str(html_path), "pdf": str(pdf_path), "pdf_language": pdf_language,
            "html_sha256": hashlib.sha256(html_bytes).hexdigest(), "pdf_sha256": hashlib.sha256(pdf_bytes).hexdigest()}


def summary_lines(run: Commissioning, language: str) -> Sequence[str]:
    with speaking(language):
        return [f"{verdict(c.ok):8} {section}: {subject}: {finding}"
                for c, (section, subject, _v, finding, _d) in zip(run.checks, _rows(run), strict=True)]
