"""What the daemon holds while idle (issue 18, idle memory; bench/startup.py measures it, bench/RESULTS.md).

The site file is validated with a validator made for that one validation: the site model itself keeps none
(0.7-0.9 MB of the idle demo daemon's RSS, used again only by a reload or a roll-out, which build one
again).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import load_site
from gateway.config.site import _site_model

REPO = Path(__file__).resolve().parents[2]


def test_a_loaded_site_keeps_no_validator() -> None:
    _site_model.cache_clear()  # a site model an earlier test dumped (or validated with) would hide it
    site = load_site(REPO / "config" / "demo.yaml")
    assert not type(site).__pydantic_complete__, "the site model built and kept a validator of its own"


def test_a_site_loaded_so_is_whole() -> None:
    _site_model.cache_clear()
    site = load_site(REPO / "config" / "demo.yaml")
    again = type(site).model_validate(site.model_dump())  # builds the model's own validator, on use
    assert again == site
    assert load_site(REPO / "config" / "demo.yaml") == site  # a reload's validation: the same site again
