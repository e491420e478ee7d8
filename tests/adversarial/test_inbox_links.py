"""Item 6: a link planted in the alert inbox (writable by the operators' group) never makes the daemon
overwrite another file. Fails before: the result sidecar was written through
``done/.<utc>-<name>.result.json.part``, a name anyone in the group could predict."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest

from sim.broker import Broker
from sim.platform import Platform
from sim.support import wait_for
from tests.adversarial.site import attack_site

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


def test_links_planted_in_the_inbox_redirect_nothing(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    with attack_site(tmp_path, broker, collector) as site:
        inbox = tmp_path / "state" / "alerts" / "inbox"
        wait_for(lambda: (inbox / "done").is_dir(), 20, "the inbox directories")
        now = dt.datetime.now(dt.UTC)
        for second in range(-2, 40):
            stamp = (now + dt.timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
            for sub in ("done", "refused"):
                (inbox / sub / f".{stamp}-req.result.json.part").symlink_to(victim)
                (inbox / sub / f"{stamp}-req.result.json").symlink_to(victim)
        alert = site.alert("atk-inbox", status=site.alert("x").status)
        request = site.request(alert, "zhang")  # one signature: refused by the interlock, a sidecar is written
        part = inbox / ".req.json.part"
        part.write_text(json.dumps(request))
        os.rename(part, inbox / "req.json")
        wait_for(lambda: any((inbox / "refused").glob("*req*.result.json")) and
                 any(not p.is_symlink() for p in (inbox / "refused").glob("*req*.result.json")), 20,
                 f"the refusal sidecar; log:\n{site.gateway.log()}")
        time.sleep(0.5)
        assert victim.read_text() == "precious\n"
        written = [p for p in (inbox / "refused").glob("*req*.result.json") if not p.is_symlink()]
        assert written and "2 distinct operator signature(s) required" in written[0].read_text()
        assert not site.anything_sounded()
        assert site.audit_chain_ok()
