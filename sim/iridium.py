"""Iridium 9602/9603 SBD modem emulator on a pty (protocols.md §1a).

AT, ATE0/ATE1, AT&K0, AT&W0, AT+SBDMTA, AT+CSQ(F), AT+CGSN, AT+SBDWB (READY, checksum, 60 s timeout
quirk: no OK after 1), AT+SBDIX(A) with MO failures on demand, AT+SBDRB, AT+SBDD0/1/2,
ring alerts (SBDRING) when an MT message is injected and alerts are on, garbled SBDRB length
fields on demand (``garble_sbdrb``).

    python -m sim.iridium /dev/pts/N
"""

from __future__ import annotations

import argparse
import collections
from dataclasses import dataclass

from drivers.iridium.at import MAX_MO, MAX_MT, checksum
from sim.serial_pty import PtyEmulator

WRITE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Session:
    mo: bytes
    mo_status: int
    momsn: int


class IridiumEmulator(PtyEmulator):
    def __init__(self, device: str, *, signal: int = 4, imei: str = "300234063904190") -> None:
        super().__init__(device)
        self.signal = signal
        self.imei = imei
        self.echo = True
        self.ring_alerts = False
        self.mo_buffer = b""
        self.mt_buffer = b""
        self.momsn = 0
        self.mtmsn = 0
        self.sessions: list[Session] = []
        self.fail_next: collections.deque[int] = collections.deque()  # MO statuses to return
        self.mt_queue: collections.deque[bytes] = collections.deque()
        self.garble_sbdrb: collections.deque[int] = collections.deque()  # length fields for the next SBDRB replies
        self._line = bytearray()
        self._binary_left = 0  # bytes still expected after READY
        self._binary = bytearray()
        self._binary_deadline = 0.0
        self._now = 0.0

    @property
    def delivered(self) -> list[bytes]:
        """MO payloads the 'gateway' received (successful sessions with a non-empty MO)."""
        return [s.mo for s in self.sessions if s.mo_status <= 4 and s.mo]

    def inject_mt(self, payload: bytes) -> None:
        if len(payload) > MAX_MT:
            raise ValueError("MT too large for a 9602")
        self.mt_queue.append(payload)
        if self.ring_alerts:
            self.write(b"SBDRING\r\n")

    def on_tick(self, now: float) -> None:
        self._now = now
        if self._binary_left and now > self._binary_deadline:
            self._binary_left = 0
            self.write(b"1\r\n")  # documented quirk: no OK after a write timeout

    def on_bytes(self, data: bytes) -> None:
        for b in data:
            if self._binary_left:
                self._binary.append(b)
                self._binary_left -= 1
                if not self._binary_left:
                    self._end_write()
                continue
            if b == 0x0D:
                line = self._line.decode("ascii", "replace").strip()
                self._line.clear()
                if self.echo:
                    self.write(line.encode() + b"\r")
                if line:
                    self._command(line.upper())
            elif b != 0x0A and len(self._line) < 256:
                self._line.append(b)

    def _reply(self, *lines: str) -> None:
        self.write(b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))

    def _command(self, cmd: str) -> None:
        if cmd in ("AT", "AT&K0", "AT&W0", "AT+SBDMTA=0"):
            self.ring_alerts = self.ring_alerts and cmd != "AT+SBDMTA=0"
            self._reply("OK")
        elif cmd in ("ATE0", "ATE1"):
            self.echo = cmd == "ATE1"
            self._reply("OK")
        elif cmd == "AT+SBDMTA=1":
            self.ring_alerts = True
            self._reply("OK")
        elif cmd == "AT+CGSN":
            self._reply(self.imei, "OK")  # as the 9603 answers: the bare 15 digits
        elif cmd in ("AT+CSQ", "AT+CSQF"):
            self._reply(f"{cmd[2:]}:{self.signal}", "OK")  # +CSQ:n / +CSQF:n
        elif cmd.startswith("AT+SBDWB="):
            n = int(cmd[9:]) if cmd[9:].isdigit() else 0
            if not 1 <= n <= MAX_MO:
                self._reply("3", "OK")
                return
            self._binary_left, self._binary = n + 2, bytearray()
            self._binary_deadline = self._now + WRITE_TIMEOUT_S
            self._reply("READY")
        elif cmd in ("AT+SBDIX", "AT+SBDIXA"):
            self._session()
        elif cmd == "AT+SBDRB":
            length = self.garble_sbdrb.popleft() if self.garble_sbdrb else len(self.mt_buffer)
            self.write(length.to_bytes(2, "big") + self.mt_buffer + checksum(self.mt_buffer))
            self._reply("OK")
        elif cmd in ("AT+SBDD0", "AT+SBDD1", "AT+SBDD2"):
            if cmd[-1] in "02":
                self.mo_buffer = b""
            if cmd[-1] in "12":
                self.mt_buffer = b""
            self._reply("0", "OK")
        else:
            self._reply("ERROR")

    def _end_write(self) -> None:
        payload, got = bytes(self._binary[:-2]), bytes(self._binary[-2:])
        if checksum(payload) != got:
            self._reply("2", "OK")
            return
        self.mo_buffer = payload
        self._reply("0", "OK")

    def _session(self) -> None:
        if self.fail_next:
            status = self.fail_next.popleft()
            self.sessions.append(Session(self.mo_buffer, status, self.momsn))
            self._reply(f"+SBDIX: {status}, {self.momsn}, 2, {self.mtmsn}, 0, 0", "OK")
            return
        self.momsn = (self.momsn + 1) & 0xFFFF
        self.sessions.append(Session(self.mo_buffer, 0, self.momsn))
        mt_status, mt_len = 0, 0
        if self.mt_queue:
            self.mt_buffer = self.mt_queue.popleft()
            self.mtmsn = (self.mtmsn + 1) & 0xFFFF
            mt_status, mt_len = 1, len(self.mt_buffer)
        self._reply(f"+SBDIX: 0, {self.momsn}, {mt_status}, {self.mtmsn}, {mt_len}, {len(self.mt_queue)}", "OK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pty")
    parser.add_argument("--signal", type=int, default=4, choices=range(6))
    args = parser.parse_args()
    IridiumEmulator(args.pty, signal=args.signal).serve_forever()


if __name__ == "__main__":
    main()
