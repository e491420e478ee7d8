"""BeiDou RDSS module emulator (2.1 text, BDS-3 text or 4.0 binary), on a pty.

Faithful to what the link must cope with (protocols.md §1b): it answers only the card query
of its own dialect, refuses a send before the service interval has elapsed with the time
still to wait, refuses oversize payloads, delivers injected incoming messages, and emits
unsolicited noise ($BDBSI / $BDPWI / $GNRMC and a line with a bad checksum).

    python -m sim.beidou /dev/pts/N [--dialect 2.1|bds3|4.0] [--interval 60]
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass

from drivers.beidou.sentences import (
    MIXED_MARKER,
    Dialect,
    StreamDecoder,
    Unknown,
    encode_frame,
    encode_text,
)
from sim.serial_pty import PtyEmulator

LEVEL_BITS = {1: 110, 2: 408, 3: 628, 4: 848}


@dataclass(frozen=True)
class Sent:
    dest: int
    payload: bytes  # without the mixed-mode marker
    at: float
    category: int | None = None  # 4.0: the $TXSQ information category byte as the host wrote it


class Constellation:
    """The RDSS space and ground segment between emulators: what one card's module accepted reaches the
    module of the card it was addressed to, ``delay_s`` later, as that module reports an incoming message
    ($BDTXR / $BDTCI / $TXXX with the sender's card id). A command receiver (``subordinates``) also gets a
    copy of every message its subordinate cards send, whatever they addressed (指挥机 monitoring).
    Length and interval limits are each sending module's own (its level and service interval)."""

    def __init__(self, delay_s: float = 0.3) -> None:
        self.delay_s = delay_s
        self._cards: dict[int, BeidouEmulator] = {}
        self.relayed: list[tuple[int, int, bytes]] = []  # (sender, receiving card, payload)
        self._lock = threading.Lock()

    def join(self, *emulators: BeidouEmulator) -> None:
        for emulator in emulators:
            self._cards[emulator.card_id] = emulator
            emulator.constellation = self

    def relay(self, sender: int, dest: int, payload: bytes) -> None:
        targets = [e for card, e in self._cards.items() if card == dest or sender in e.subordinates]
        for target in targets:
            with self._lock:
                self.relayed.append((sender, target.card_id, payload))
            timer = threading.Timer(self.delay_s, target.inject, (sender, payload))
            timer.daemon = True
            timer.start()


class BeidouEmulator(PtyEmulator):
    def __init__(
        self,
        device: str,
        *,
        dialect: Dialect = Dialect.V21,
        card_id: int = 166166,
        interval_s: int = 60,
        level: int = 3,
        noise_period_s: float | None = 0.3,
        has_card: bool = True,
        subordinates: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(device)
        self.dialect = dialect
        self.card_id = card_id
        self.interval_s = interval_s
        self.level = level
        self.noise_period_s = noise_period_s
        self.has_card = has_card
        self.subordinates = subordinates  # a command receiver: cards whose every message it also receives
        self.constellation: Constellation | None = None  # set by Constellation.join: sends reach other cards
        self.sent: list[Sent] = []
        self.refusals: list[str] = []  # "interval", "oversize", "dialect", "no card"
        self._decoder = StreamDecoder()
        self._last_send: float | None = None
        self._next_noise = 0.0
        self._noise_step = 0

    @property
    def max_payload(self) -> int:
        """Data bytes per message after the 8-bit mixed-mode marker."""
        return (LEVEL_BITS[self.level] - 8) // 8

    # ------------------------------------------------------------- test hooks

    def inject(self, sender: int, payload: bytes) -> None:
        """An incoming (MT) message from ``sender``, as the module would report it."""
        data = bytes([MIXED_MARKER]) + payload
        if self.dialect is Dialect.V21:
            out = encode_text("BDTXR", ["1", f"{sender:07d}", "2", "", data.hex().upper()])
        elif self.dialect is Dialect.BDS3:
            stamp = time.strftime("%H%M%S", time.gmtime())
            fields = [f"{sender:07d}", f"{self.card_id:07d}", "2", stamp, "3", "0", data.hex().upper()]
            out = encode_text("BDTCI", fields)
        else:
            content = (bytes([0x46]) + sender.to_bytes(3, "big") + b"\x0c\x1e"
                       + (8 * len(data)).to_bytes(2, "big") + data + b"\x00")
            out = encode_frame("TXXX", self.card_id, content)
        self.write(out)

    # ------------------------------------------------------------- protocol

    def on_bytes(self, data: bytes) -> None:
        for item in self._decoder.feed(data):
            if isinstance(item, Unknown):
                try:
                    self._command(item.name, item.fields)
                except (ValueError, IndexError):
                    self.refusals.append("malformed")  # a real module ignores what it cannot parse

    def on_tick(self, now: float) -> None:
        if self.noise_period_s is None or now < self._next_noise:
            return
        self._next_noise = now + self.noise_period_s
        self._noise_step += 1
        noise = [
            encode_text("BDBSI", ["01", "02", "2", "3", "0", "1", "4", "0", "0", "2", "0", "1"]),
            encode_text("GNRMC", ["081836.00", "A", "3113.41", "N", "12128.29", "E", "0.0", "", "091025", "", ""]),
            encode_text("BDPWI", ["081836.00", "1", "1", "4", "40", "41", "42", "0"]),
            b"$BDBSI,1,2,3*00\r\n",  # bad checksum: must be dropped, not crash the parser
        ]
        self.write(noise[self._noise_step % len(noise)])

    def _command(self, name: str, fields: tuple[str, ...]) -> None:
        if name == "CCICA" and self.dialect is Dialect.V21:
            self._card_v21()
        elif name == "CCICR" and self.dialect is Dialect.BDS3:
            self._card_bds3()
        elif name == "ICJC" and self.dialect is Dialect.V40:
            self._card_v40()
        elif name == "CCTXA" and self.dialect is Dialect.V21 and len(fields) >= 4:
            self._send(int(fields[0]) if fields[0].isdigit() else -1, fields[3], fields[2] == "2")
        elif name == "CCTCQ" and self.dialect is Dialect.BDS3 and len(fields) >= 5:
            self._send(int(fields[0]) if fields[0].isdigit() else -1, fields[4], fields[3] == "3")
        elif name == "TXSQ" and self.dialect is Dialect.V40:
            content = bytes.fromhex(fields[1])
            bits = int.from_bytes(content[4:6], "big")
            data = content[7 : 7 + (bits + 7) // 8]
            # 0x46 and 0x42 both occur for code and mixed messages (docs/satellite.md §3): the marker tells
            self._send(int.from_bytes(content[1:4], "big"), data.hex(), True, category=content[0])
        # anything else (other dialects' queries included) is ignored, as modules do

    def _card_v21(self) -> None:
        if not self.has_card:
            self.write(encode_text("BDICI", ["0000000", "00000000", "0000000", "0", "0", "0", "N", "0"]))
            return
        fields = [f"{self.card_id:07d}", f"{self.card_id:08d}", "0000011", "6", str(self.interval_s),
                  str(self.level), "N", "0"]
        self.write(encode_text("BDICI", fields))

    def _card_bds3(self) -> None:
        card = self.card_id if self.has_card else 0
        fields = [f"{card:07d}", "0", "0", "3", "0", "N", "2", "N", "1", "0", "0", "3", "1",
                  str(self.interval_s), str(self.level), "0", "0", "0", "0", "21", "0", "0", "0"]
        self.write(encode_text("BDICP", fields))

    def _card_v40(self) -> None:
        content = (b"\x00" + (11).to_bytes(3, "big") + b"\x06" + self.interval_s.to_bytes(2, "big")
                   + bytes([self.level, 0]) + b"\x00\x00")
        self.write(encode_frame("ICXX", self.card_id if self.has_card else 0, content))

    def _send(self, dest: int, content_hex: str, mixed: bool, *, category: int | None = None) -> None:
        now = time.monotonic()
        try:
            data = bytes.fromhex(content_hex)
        except ValueError:
            self._feedback(False, 0, "bad content")
            return
        if mixed and data[:1] == bytes([MIXED_MARKER]):
            data = data[1:]
        if not self.has_card:
            self._feedback(False, 0, "no card")
        elif self._last_send is not None and now - self._last_send < self.interval_s:
            wait = int(self.interval_s - (now - self._last_send)) + 1
            self._feedback(False, wait, "interval")
        elif len(data) > self.max_payload or dest < 0:
            self._feedback(False, 0, "oversize")
        else:
            self._last_send = now
            self.sent.append(Sent(dest, data, now, category))
            self._feedback(True, self.interval_s, "")
            if self.constellation is not None:
                self.constellation.relay(self.card_id, dest, data)

    def _feedback(self, ok: bool, wait_s: int, why: str) -> None:
        if not ok:
            self.refusals.append(why)
        if self.dialect is Dialect.V21:
            freq_ok = "N" if why == "interval" else "Y"
            mmss = f"{wait_s // 60:02d}{wait_s % 60:02d}"
            self.write(encode_text("BDFKI", ["TXA", "Y" if ok else "N", freq_ok, "0", mmss]))
        elif self.dialect is Dialect.BDS3:
            reason = {"": "0", "interval": "1", "no card": "5"}.get(why, "6")
            stamp = time.strftime("%H%M%S", time.gmtime())
            remaining = str(wait_s if not ok else 0)
            self.write(encode_text("BDFKI", [stamp, "TCQ", "Y" if ok else "N", reason, remaining]))
        else:
            flag = 0 if ok else (4 if why == "interval" else 1)
            extra = wait_s.to_bytes(4, "big") if flag == 4 else b"TXSQ"
            self.write(encode_frame("FKXX", self.card_id, bytes([flag]) + extra))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pty")
    parser.add_argument("--dialect", choices=[d.value for d in Dialect], default=Dialect.V21.value)
    parser.add_argument("--card", type=int, default=166166)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--level", type=int, choices=sorted(LEVEL_BITS), default=3)
    args = parser.parse_args()
    BeidouEmulator(
        args.pty, dialect=Dialect(args.dialect), card_id=args.card, interval_s=args.interval, level=args.level
    ).serve_forever()


if __name__ == "__main__":
    main()
