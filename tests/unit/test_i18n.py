"""Chinese and English: complete catalogs, the language chosen as documented, and the texts people read."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from gateway import i18n
from gateway.config import ConfigError, load_site_text
from gateway.i18n.catalogs import extract_template, read_catalog
from gateway.status.page import index_html
from gateway.status.summary import render_summary
from tests.unit.cli import fieldgate
from tests.unit.test_config_errors import GOOD

LANGUAGES = (i18n.ENGLISH, i18n.CHINESE)


@pytest.fixture(scope="module")
def template() -> Catalog:
    return extract_template()


def fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_code_is_translated_and_none_is_fuzzy(template: Catalog, language: str) -> None:
    catalog = read_catalog(language)
    assert not catalog.fuzzy, f"{language}: the catalog header is marked fuzzy"
    used = {m.id for m in template if m.id}
    have = {m.id: m for m in catalog if m.id}
    assert used, "no message extracted: the extraction itself is broken"
    assert sorted(used - set(have)) == [], f"{language}: not in the catalog (python -m gateway.i18n.catalogs)"
    assert sorted(set(have) - used) == [], f"{language}: in the catalog, no longer in the code"
    untranslated = sorted(k for k, m in have.items() if not m.string)
    assert untranslated == [], f"{language}: untranslated"
    fuzzy = sorted(k for k, m in have.items() if m.fuzzy)
    assert fuzzy == [], f"{language}: fuzzy"
    wrong = sorted(k for k, m in have.items() if fields(k) != fields(str(m.string)))
    assert wrong == [], f"{language}: placeholders differ from the message's"


def test_the_catalogs_compile_and_chinese_differs_from_english() -> None:
    assert i18n.translate(i18n.CHINESE, "Points") == "测点"
    assert i18n.translate(i18n.ENGLISH, "Points") == "Points"
    assert i18n.translate(i18n.CHINESE, "no such message, shown as it is") == "no such message, shown as it is"


@pytest.mark.parametrize(("header", "expected"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh_CN"), ("en-US,en;q=0.9,zh-CN;q=0.8", "en"), ("zh", "zh_CN"),
    ("zh-Hans-CN", "zh_CN"), ("zh-TW", "en"), ("fr-FR, zh;q=0.5", "zh_CN"), ("en;q=0.1, zh;q=0.2", "zh_CN"),
    ("", "en"), ("*", "en"), ("zh;q=abc, en", "en"), ("zh;q=0", "en"), ("x" * 5000, "en"),
])
def test_accept_language(header: str, expected: str) -> None:
    assert i18n.negotiate(header) == expected


def test_the_site_file_overrides_the_browser() -> None:
    assert i18n.choose_for_page("zh-CN", "en-US") == "zh_CN"
    assert i18n.choose_for_page("en", "zh-CN") == "en"
    assert i18n.choose_for_page("auto", "zh-CN") == "zh_CN"


def test_command_line_language_order() -> None:
    env = {"LANG": "zh_CN.UTF-8"}
    assert i18n.choose(None, None, env) == "zh_CN"
    assert i18n.choose("en", "zh-CN", env) == "en"
    assert i18n.choose(None, "en", env) == "en"
    assert i18n.choose(None, "auto", {"LANG": "C.UTF-8"}) == "en"
    assert i18n.choose(None, None, {"LANGUAGE": "zh_CN:en", "LANG": "en_US.UTF-8"}) == "zh_CN"


def test_the_page_in_chinese_and_english() -> None:
    zh, en = index_html(i18n.CHINESE), index_html(i18n.ENGLISH)
    assert '<html lang="zh-CN">' in zh and "<h2>测点</h2>" in zh and "Points" not in zh
    assert '<html lang="en">' in en and "<h2>Points</h2>" in en
    # The script's words travel as escaped JSON in a data attribute (no inline script).
    assert re.search(r'data-words="\{&quot;healthy&quot;:&quot;运行正常&quot;', zh), zh[:2000]




def errors_in(language: str, text: str) -> list[str]:
    with i18n.speaking(language), pytest.raises(ConfigError) as caught:
        load_site_text(text, "site.yaml")
    return caught.value.lines


@pytest.mark.parametrize(("mistake", "english", "chinese"), [
    (("    host: 127.0.0.1\n    devices", "    hots: 127.0.0.1\n    devices"),
     "site.yaml:7:5: buses[0].hots: unknown key 'hots' (did you mean 'host'?)",
     "site.yaml:7:5: buses[0].hots: 未知的键 'hots' （是否想写 'host'？）"),
    (("            address: 0", "            address: ten"),
     "site.yaml:12:22: buses[0].devices[0].points[0].address: Input should be a valid integer, "
     "unable to parse string as an integer",
     "site.yaml:12:22: buses[0].devices[0].points[0].address: 应为整数，无法把该字符串解析为整数"),
    (("            address: 0", "            address: -1"),
     "site.yaml:12:22: buses[0].devices[0].points[0].address: Input should be greater than or equal to 0",
     "site.yaml:12:22: buses[0].devices[0].points[0].address: 应大于或等于 0"),
    (("  - type: mqtt\n    host: 127.0.0.1\n", "  - type: mqtt\n"),
     "site.yaml:14:5: links[0]: missing required key 'host'",
     "site.yaml:14:5: links[0]: 缺少必填键 'host'"),
])
def test_common_config_errors_in_both_languages_at_the_same_place(
        mistake: tuple[str, str], english: str, chinese: str) -> None:
    text = GOOD.replace(*mistake)
    assert english in errors_in(i18n.ENGLISH, text)
    assert chinese in errors_in(i18n.CHINESE, text)


def test_fieldgate_validate_speaks_the_site_files_language(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GOOD.replace("    hots", "    host").replace("            address: 0", "            address: -1")
                    + "status: {language: zh-CN}\n")
    ran = fieldgate("validate", str(site))
    assert ran.returncode == 1
    assert f"{site}:12:22: buses[0].devices[0].points[0].address: 应大于或等于 0" in ran.stderr
    ran = fieldgate("--lang", "en", "validate", str(site))
    assert (ran.returncode, ran.stderr.strip()) == (1, f"{site}:12:22: buses[0].devices[0].points[0].address: "
                                                       "Input should be greater than or equal to 0")
    assert i18n.current() == i18n.ENGLISH  # the command's language does not outlive it


def test_fieldgate_status_summary_in_chinese() -> None:
    snapshot = {"gateway": {"id": "gw", "name": "水库", "uptime_s": 30.0},
                "points": [{"point": "level", "value": 1.5, "unit": "m", "q": "comm_fail", "age_s": 2.0}],
                "devices": [{"bus": "b", "device": "d", "unit_id": 1, "online": False}],
                "loops": [{"name": "bus b", "overdue": True}]}
    with i18n.speaking(i18n.CHINESE):
        text = render_summary(snapshot)
    assert text.splitlines()[0] == "网关 gw 水库 — 已运行 30.0 秒 — 超时：bus b"
    assert "通信故障" in text and "设备（0/1 在线）" in text and "离线" in text
    # Columns line up in a terminal: a CJK character is two columns wide.
    header = next(line for line in text.splitlines() if "测点" in line and "数值" in line)
    row = next(line for line in text.splitlines() if line.strip().startswith("level"))
    assert header.index("数值") * 2 - sum(1 for c in header[: header.index("数值")] if ord(c) < 128) \
        == row.index("1.5"), (header, row)
