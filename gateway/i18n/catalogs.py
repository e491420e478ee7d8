"""Keep the catalogs in step with the code: ``python -m gateway.i18n.catalogs`` (a developer's tool).

Extracts every ``_()`` / ``N_()`` message of ``gateway/`` with Babel, then updates each ``.po``: new
messages are added (English: the message itself; Chinese: empty, to be translated), ones no longer in the
code are dropped. tests/unit/test_i18n.py runs the same extraction and fails on any message a catalog lacks,
leaves untranslated or marks fuzzy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from gateway.i18n import CHINESE, DOMAIN, ENGLISH, LOCALE_DIR

PACKAGE = Path(__file__).resolve().parents[1]
KEYWORDS = {"_": None, "N_": None}


def extract_template() -> Catalog:
    """The messages the code uses (a .pot in memory)."""
    template = Catalog(project="fieldgate", domain=DOMAIN)
    for filename, lineno, message, comments, context in extract_from_dir(
            str(PACKAGE), method_map=[("**.py", "python")], keywords=KEYWORDS, comment_tags=("i18n:",),
            strip_comment_tags=True):
        template.add(message, None, [(f"gateway/{filename}", lineno)], auto_comments=comments, context=context)
    return template


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def update(language: str, template: Catalog) -> int:
    """Bring one catalog in line with ``template``; returns how many messages still need a translation."""
    path = po_path(language)
    catalog = read_catalog(language) if path.exists() else Catalog(locale=language, domain=DOMAIN,
                                                                   project="fieldgate")
    catalog.update(template, no_fuzzy_matching=True)
    catalog.obsolete.clear()
    catalog.fuzzy = False  # a fresh catalog's header starts fuzzy; ours are reviewed (tests/unit/test_i18n.py)
    for message in catalog:
        if message.id and language == ENGLISH and not message.string:
            message.string = message.id
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        write_po(handle, catalog, sort_output=True, include_previous=False, width=116, no_location=True)
    return sum(1 for m in catalog if m.id and not m.string)


def main() -> int:
    # A fresh template each: Catalog.update() adopts the template's message objects.
    missing = {language: update(language, extract_template()) for language in (ENGLISH, CHINESE)}
    for language, count in missing.items():
        print(f"{po_path(language)}: {count} untranslated")
    return 1 if any(missing.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
