"""The commissioning report: HTML and PDF in both languages, the verdict rule, escaping."""

from __future__ import annotations

from pathlib import Path

from gateway.commission.checks import check
from gateway.commission.report import Commissioning, render_html, verdict, versions, write_report
from gateway.i18n import CHINESE, ENGLISH, N_, speaking


def run(*oks: bool | None) -> Commissioning:
    checks = [check("devices", "plant/gauge/<level>", ok, N_("answers: {value} {unit}"), value=1.5, unit="m")
              for ok in oks]
    return Commissioning("gw-1", "水库", "site.yaml", "ab" * 32, "tech", 1_764_000_000.0, 1_764_000_060.0, checks,
                         versions())


def test_unknown_is_listed_but_does_not_fail_the_run() -> None:
    assert run(True, None).passed
    assert not run(True, False, None).passed
    with speaking(CHINESE):
        assert (verdict(True), verdict(False), verdict(None)) == ("通过", "不通过", "未知")


def test_html_in_both_languages_escapes_what_it_shows() -> None:
    zh, en = render_html(run(True), CHINESE), render_html(run(True), ENGLISH)
    assert '<html lang="zh-CN">' in zh and "调试验收报告" in zh and "有应答：1.5 m" in zh
    assert "Commissioning report" in en and "answers: 1.5 m" in en and "PASSED" in en
    assert "plant/gauge/&lt;level&gt;" in en and "<level>" not in en
    assert "ab" * 32 in en and "fieldgate" in versions()


def test_report_files_and_their_hashes(tmp_path: Path) -> None:
    files = write_report(run(True, False), tmp_path / "out", CHINESE)
    html, pdf = Path(files["html"]), Path(files["pdf"])
    assert html.read_text(encoding="utf-8").count('class="fail"') == 1
    assert pdf.read_bytes().startswith(b"%PDF-") and len(files["pdf_sha256"]) == 64
    assert html.name.startswith("commission-gw-1-20251124T") and pdf.suffix == ".pdf"
    assert files["pdf_language"] in (CHINESE, ENGLISH)  # English only where the fonts are missing
