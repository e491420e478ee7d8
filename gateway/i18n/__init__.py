"""Chinese and English for the people at the box: the status page, `fieldgate status`, operator texts and
the common config errors.

Catalogs are gettext ``.po`` files in ``locale/<lang>/LC_MESSAGES/fieldgate.po`` (edited by people,
checked by tests/unit/test_i18n.py). They are compiled to the binary ``.mo`` form in memory, once per
process, when a language is first used (Babel's pofile/mofile): a fresh clone and an editable install work
with no build step, and there is no generated file to forget. A catalog that cannot be read falls back to
the English text in the code (logged), never to a crash.

Which language: ``current()`` is a context variable, so the status server can answer each request in the
browser's language while a command-line process sets one language for itself (``use()``).
Strings are marked ``_("...")`` where they are shown and ``N_("...")`` where they are only named; the
placeholders are ``{name}`` (str.format), the same in every language.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gettext
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("fieldgate.i18n")

DOMAIN = "fieldgate"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
ENGLISH = "en"
CHINESE = "zh_CN"
LANGUAGES = (ENGLISH, CHINESE)
# What the site file and --lang accept, as people write them; "auto" = the browser's / the environment's.
SETTINGS = ("auto", "en", "zh-CN")

_current: contextvars.ContextVar[str] = contextvars.ContextVar("fieldgate_language", default=ENGLISH)
_TAG = re.compile(r"^[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*$")
MAX_ACCEPT_LANGUAGE = 512  # characters of the header looked at; a browser sends < 100


def normalize(tag: str | None) -> str | None:
    """``zh-CN``, ``zh_CN.UTF-8``, ``zh-Hans``, ``zh`` → ``zh_CN``; ``en-GB``, ``C`` → ``en``; others → None."""
    if not tag:
        return None
    tag = tag.split(".")[0].split("@")[0].strip()
    if tag in ("C", "POSIX"):
        return ENGLISH
    if not _TAG.match(tag):
        return None
    parts = tag.replace("_", "-").lower().split("-")
    if parts[0] == "en":
        return ENGLISH
    # Traditional-script or Taiwan/Hong Kong variants are not simplified Chinese; show English rather than guess.
    if parts[0] == "zh" and not {"hant", "tw", "hk", "mo"} & set(parts[1:]):
        return CHINESE
    return None


def negotiate(accept_language: str, default: str = ENGLISH) -> str:
    """The best of our languages for an ``Accept-Language`` header (q-values honoured, malformed parts skipped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language[:MAX_ACCEPT_LANGUAGE].split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                continue
        language = normalize(tag.strip())
        if language is not None and 0 < quality <= 1:
            ranked.append((-quality, index, language))
    return min(ranked)[2] if ranked else default


def from_environment(environ: dict[str, str] | None = None) -> str:
    """The language of a terminal: LANGUAGE, LC_ALL, LC_MESSAGES, LANG, as gettext looks at them."""
    env = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        for candidate in env.get(name, "").split(":"):
            language = normalize(candidate)
            if language is not None:
                return language
    return ENGLISH


def choose(flag: str | None, site_setting: str | None = None, environ: dict[str, str] | None = None) -> str:
    """A command line's language: --lang, else the site file's setting (unless auto), else the environment."""
    for setting in (flag, site_setting):
        if setting and setting != "auto":
            language = normalize(setting)
            if language is not None:
                return language
    return from_environment(environ)


def choose_for_page(site_setting: str, accept_language: str) -> str:
    """The status page's language: the site file's setting unless auto, else the browser's preference."""
    if site_setting != "auto":
        return normalize(site_setting) or ENGLISH
    return negotiate(accept_language)


@functools.lru_cache(maxsize=len(LANGUAGES))
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of ``language`` (English text when it has none or it cannot be read)."""
    if language not in LANGUAGES:
        return gettext.NullTranslations()
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language, domain=DOMAIN)
        compiled = io.BytesIO()
        write_mo(compiled, catalog, use_fuzzy=False)
        compiled.seek(0)
        return gettext.GNUTranslations(compiled)
    except Exception as exc:  # a broken catalog must never take the page or a command down
        log.error("message catalog %s unusable (%s); showing English", path, exc)
        return gettext.NullTranslations()


def current() -> str:
    return _current.get()


def use(language: str) -> contextvars.Token[str]:
    """Make ``language`` the current one in this context (reset with the token)."""
    return _current.set(language if language in LANGUAGES else ENGLISH)


def reset(token: contextvars.Token[str]) -> None:
    _current.reset(token)


def site_setting(config_path: str | None) -> str | None:
    """``status.language`` of a site file, read leniently (the file may be the broken one being validated)."""
    if not config_path:
        return None
    try:
        from gateway.config.yamlmarks import load_marked

        data = load_marked(config_path).data
        value = data.get("status", {}).get("language") if isinstance(data, dict) else None
    except Exception:  # any problem with the file is reported by the command itself, in the fallback language
        return None
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def speaking(language: str) -> Iterator[None]:
    token = use(language)
    try:
        yield
    finally:
        _current.reset(token)


def _(message: str) -> str:
    """``message`` in the current language."""
    return translations(_current.get()).gettext(message)


def translate(language: str, message: str) -> str:
    return translations(language).gettext(message)


def N_(message: str) -> str:
    """Marks a message for the catalog where it is named, not shown; translate it with ``_()`` when shown."""
    return message


def html_lang(language: str) -> str:
    """The BCP 47 tag for ``<html lang>`` and Content-Language."""
    return language.replace("_", "-")
