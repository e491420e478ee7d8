"""The guided commissioning check on a running gateway: devices, links, broadcast outputs, clock.

Every check goes through the owner of what it touches: readings from the gateway's latest values,
links' own state, a Test broadcast through ``BroadcastSubsystem.handle`` (the interlock, signatures,
read-back) and the outputs' self-test. Nothing here writes to a device or an output directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from gateway.alerts.model import Alert, MsgType, Status
from gateway.alerts.signing import OperatorSignature
from gateway.i18n import N_
from gateway.shared import Quality

if TYPE_CHECKING:
    from gateway.contracts import Uplink
    from gateway.state import GatewayState

CLOCK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    section: str  # devices / links / broadcast / clock
    subject: str
    ok: bool | None  # None: could not be told (skipped, unknown)
    summary: str  # a catalog message (N_), translated when the report is written
    detail: str = ""
    args: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["args"] = dict(self.args)
        return out


def check(section: str, subject: str, ok: bool | None, summary: str, detail: str = "", **args: Any) -> Check:
    return Check(section, subject, ok, summary, detail, tuple((k, str(v)) for k, v in args.items()))


async def wait_until(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def check_devices(gw: GatewayState, wait_s: float) -> list[Check]:
    points = [(bus, device, point) for bus in gw.config.buses for device in bus.devices for point in device.points]
    await wait_until(lambda: all(p.id in gw.latest for _b, _d, p in points), wait_s)
    found = []
    for bus, device, point in points:
        subject = f"{bus.name}/{device.name}/{point.id}"
        reading = gw.latest.get(point.id)
        if reading is None:
            found.append(check("devices", subject, False, N_("no reading within {seconds} s"), seconds=round(wait_s)))
            continue
        value, unit = reading.value, reading.unit or ""
        if reading.quality is not Quality.GOOD:
            found.append(check("devices", subject, False, N_("answers with quality {quality}"),
                               quality=reading.quality.value))
            continue
        low, high = getattr(point, "valid_min", None), getattr(point, "valid_max", None)
        inside = not isinstance(value, int | float) or (
            (low is None or value >= low) and (high is None or value <= high))
        if not inside:
            found.append(check("devices", subject, False, N_("{value} {unit} is outside {low}..{high}"),
                               value=value, unit=unit, low=low, high=high))
        else:
            found.append(check("devices", subject, True, N_("answers: {value} {unit}"), value=_number(value),
                               unit=unit))
    return found


async def check_links(gw: GatewayState, wait_s: float) -> list[Check]:
    links: list[tuple[Uplink, str]] = [
        *((slot.link, "") for slot in gw.primaries),
        *((link, "") for link, _cfg in gw.report_links),
        *((slot.link, f"{slot.link.max_bytes} bytes per message") for slot in gw.satellites)]
    await wait_until(lambda: all(link.connected for link, _detail in links), wait_s)
    found = []
    for link, detail in links:
        kind = type(link).__name__
        if not link.connected:
            found.append(check("links", link.name, False, N_("not connected within {seconds} s"),
                               seconds=round(wait_s), kind=kind))
            continue
        found.append(check("links", link.name, True, N_("connected"), detail, kind=kind))
    return found


def test_alert(gw: GatewayState, now: float) -> Alert:
    """The Test alert a commissioning run asks the operators to sign: every zone, the site's Test clips."""
    sent = dt.datetime.fromtimestamp(int(now), dt.UTC)
    broadcast = gw.config.broadcast
    return Alert(identifier=f"{broadcast.sender}.commission.{int(now)}", sender=broadcast.sender, sent=sent,
                 status=Status.TEST, msg_type=MsgType.ALERT, event="commissioning test", areas=tuple(broadcast.zones),
                 expires=sent + dt.timedelta(minutes=30), source="manual", headline="fieldgate commission")


async def check_broadcast(gw: GatewayState, request: tuple[Alert, list[OperatorSignature]] | None) -> list[Check]:
    broadcast = gw.broadcast
    if broadcast is None:
        return [check("broadcast", "-", None, N_("no broadcast outputs on this site"))]
    found: list[Check] = []
    if request is None:
        found.append(check("broadcast", "Test", None, N_("Test broadcast not run: no operator-signed Test request "
                                                         "(fieldgate commission --operator NAME --key FILE)")))
    else:
        alert, signatures = request
        if alert.status is not Status.TEST:
            raise ValueError(f"a commissioning broadcast must be status Test, not {alert.status.value}")
        results = await broadcast.handle(alert, origin="manual", signatures=signatures)
        decision = next((r for r in results if r.output == "interlock"), None)
        if decision is not None:
            found.append(check("broadcast", "Test", False, N_("the interlock refused the Test alert: {reason}"),
                               reason=decision.detail.get("reason", "?")))
        for result in results:
            if result.output == "interlock":
                continue
            readback = result.detail.get("readback", result.detail.get("verified"))
            found.append(check("broadcast", f"{result.output} ({result.action})", result.ok,
                               N_("Test {action}: ok") if result.ok else N_("Test {action} failed: {fault}"),
                               _short(result.detail), action=result.action, fault=result.fault or "?",
                               readback=readback))
        if decision is None:
            await broadcast.cancel(alert.identifier, "commission")  # the Test stops here, all-clear played
        found += _skipped(gw, alert, {r.output for r in results})
    for result in await broadcast.selftest():
        found.append(check("broadcast", f"{result.output} (selftest)", result.ok,
                           N_("self-test with read-back: ok") if result.ok else N_("self-test failed: {fault}"),
                           _short(result.detail), fault=result.fault or "?"))
    return found


def _skipped(gw: GatewayState, alert: Alert, sounded: Iterable[str]) -> list[Check]:
    """Outputs the interlock kept silent under Test (outdoor sirens): said, with why, never hidden."""
    assert gw.broadcast is not None
    _activations, skipped = gw.broadcast.interlock.plan_outputs(alert)
    return [check("broadcast", f"{name} (Test)", None, N_("not driven by a Test alert: {reason}"), reason=why)
            for name, why in skipped.items() if name not in set(sounded)]


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _short(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in list(detail.items())[:6])[:300]


async def check_clock() -> Check:
    """NTP-synchronised per timedatectl (systemd-timesyncd or chrony behind it), else chronyc, else unknown."""
    timedatectl, chronyc = shutil.which("timedatectl"), shutil.which("chronyc")
    if timedatectl:
        out = await _run(timedatectl, "show", "-p", "NTPSynchronized", "--value")
        if out in ("yes", "no"):
            return check("clock", "timedatectl", out == "yes",
                         N_("synchronised (NTP)") if out == "yes" else N_("NOT synchronised (NTP)"))
    if chronyc:
        out = await _run(chronyc, "tracking")
        if out is not None and "Leap status" in out:
            synced = re.search(r"^Leap status\s*:\s*Normal", out, re.MULTILINE) is not None
            return check("clock", "chronyc", synced,
                         N_("synchronised (NTP)") if synced else N_("NOT synchronised (NTP)"), out[-300:])
    return check("clock", "-", None, N_("unknown: neither timedatectl nor chronyc answered"),
                 time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


async def _run(*argv: str) -> str | None:
    try:
        process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(process.communicate(), CLOCK_TIMEOUT_S)
    except OSError:
        return None
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return out.decode(errors="replace").strip() if process.returncode == 0 else None


async def run_checks(gw: GatewayState, *, wait_s: float,
                     request: tuple[Alert, list[OperatorSignature]] | None) -> list[Check]:
    devices, links = await asyncio.gather(check_devices(gw, wait_s), check_links(gw, wait_s))
    return [*devices, *links, *await check_broadcast(gw, request), await check_clock()]
