"""Config models of the broadcast outputs, one per output type (``type`` discriminator)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.alerts.contract import HARD_MAX_ACTIVATION_S
from gateway.shared import Seconds, StrictModel

# Settings of a board's own Modbus master; meaningless (and misleading) for a board on a bus.
_OWN_MASTER_FIELDS = frozenset({"host", "port", "serial_port", "baud", "parity", "stopbits", "device_id"})
# A write routed through a bus waits for the transaction in progress and for the writes queued
# before it (each bounded by the bus's device timeouts); beyond this the relay reports unreachable.
BUS_WRITE_WAIT_S = 5.0


class ModbusBoardConfig(StrictModel):
    """How to reach a Modbus relay board.

    ``tcp`` (or a TCP-to-RS485 bridge) and ``serial``: the output opens its own Modbus master.
    ``bus``: the board is a unit on a polled line of the ``buses:`` section; the coil writes go
    through that bus's scheduler (only one master may talk on a line), so the coil must be a
    configured ``table: coil`` point of the device with ``unit_id`` on that bus.
    """

    transport: Literal["tcp", "serial", "bus"] = "tcp"
    host: str = "127.0.0.1"
    port: int = Field(default=502, ge=1, le=65535)
    serial_port: str | None = None
    baud: int = Field(default=9600, ge=1200, le=115200)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    device_id: int = Field(default=1, ge=0, le=247)
    timeout: Seconds = Field(default=1.0, gt=0, le=30)
    bus: str | None = Field(default=None, description="transport: bus: name of the Modbus bus the board is on")
    unit_id: int | None = Field(default=None, ge=0, le=247, description="transport: bus: the board's unit id")

    @model_validator(mode="after")
    def _transport_fields(self) -> ModbusBoardConfig:
        if self.transport == "serial" and not self.serial_port:
            raise ValueError("transport: serial needs serial_port (e.g. /dev/ttyUSB0)")
        if self.transport == "bus":
            if not self.bus or self.unit_id is None:
                raise ValueError("transport: bus needs bus: (a Modbus bus name from buses:) and unit_id: "
                                 "(the relay board's unit on that line)")
            # Compared with the defaults, not model_fields_set, so a dumped config validates again.
            fields = type(self).model_fields
            own_master = {f for f in _OWN_MASTER_FIELDS if getattr(self, f) != fields[f].default}
            if own_master:
                raise ValueError(f"transport: bus uses the bus's port settings; remove {', '.join(sorted(own_master))}")
        elif self.bus is not None or self.unit_id is not None:
            raise ValueError("bus:/unit_id: are for transport: bus (use device_id: with tcp/serial)")
        return self

    @property
    def wait_s(self) -> float:
        """Longest wait for one request: the client timeout, or for a bus board the bus's queue too."""
        if self.transport == "bus" and self.timeout == type(self).model_fields["timeout"].default:
            return BUS_WRITE_WAIT_S
        return self.timeout


class BoardAutoOffConfig(StrictModel):
    """Board-side dead-man: a holding register that makes the board drop the relay by itself.

    Many RS-485 relay boards have a "flash"/interlock/watchdog register; the address and unit
    are board-specific (read the board manual). The gateway writes ceil(max_activation / time_unit)
    there before switching the relay on, so the relay drops even if the gateway dies.
    """

    register_address: int = Field(ge=0, le=65535)
    time_unit: Seconds = Field(default=0.1, gt=0, description="the time one count of the register stands for")
    max_value: int = Field(default=65535, ge=1, le=65535)


class RelayCoilConfig(StrictModel):
    board: ModbusBoardConfig
    coil: int = Field(ge=0, le=65535, description="0-based coil address as sent on the wire")
    readback: Literal["coil", "discrete_input", "none"] = Field(
        default="coil",
        description="what proves the relay switched: the coil itself, or a current-sense discrete input",
    )
    readback_address: int | None = Field(default=None, ge=0, le=65535)

    @property
    def readback_at(self) -> int:
        return self.coil if self.readback_address is None else self.readback_address

    @model_validator(mode="after")
    def _bus_readback(self) -> RelayCoilConfig:
        if self.board.transport == "bus" and (
            self.readback == "discrete_input" or self.readback_at != self.coil
        ):
            raise ValueError("a board on a bus (transport: bus) proves the switch by the bus's verified write: "
                             "the coil point is read back after each write; use readback: coil (or none)")
        return self


class SirenRelayConfig(RelayCoilConfig):
    type: Literal["modbus_relay_siren"]
    outdoor: bool = True
    max_activation: Seconds = Field(default=180.0, gt=0, le=HARD_MAX_ACTIVATION_S)
    board_auto_off: BoardAutoOffConfig | None = None

    @property
    def is_siren(self) -> bool:
        return True

    @model_validator(mode="after")
    def _bus_needs_board_auto_off(self) -> SirenRelayConfig:
        if self.board.transport == "bus" and self.board_auto_off is None:
            # Through a bus, even the backstop's OFF needs the event loop and the bus task; only
            # the board's own timer drops the relay when the process is stuck or dead.
            raise ValueError("a siren on a bus (transport: bus) needs board_auto_off: {register_address: ...} "
                             "(the board's own auto-off timer, a configured holding point of that unit): "
                             "its OFF writes go through the bus task and cannot outlive a stuck gateway")
        return self


class AmplifierConfig(RelayCoilConfig):
    warmup: Seconds = Field(default=0.5, le=10)


class TtsConfig(StrictModel):
    # {out} is the WAV to write, {text} the text; espeak-ng voice cmn is Mandarin. The text comes from
    # alerts (operators, the platform): "--" ends the options, so it can never be read as one
    # (espeak-ng -f<path> would speak a file).
    command: list[str] = Field(
        default_factory=lambda: ["espeak-ng", "-v", "cmn", "-s", "140", "-w", "{out}", "--", "{text}"], min_length=1
    )
    timeout: Seconds = Field(default=20.0, gt=0)
    max_chars: int = Field(default=200, ge=1, le=2000)

    @field_validator("command")
    @classmethod
    def _text_after_separator(cls, command: list[str]) -> list[str]:
        if "{text}" in command:
            at = command.index("{text}")
            if "--" not in command[:at]:
                raise ValueError('put "--" before "{text}" in the TTS command: alert text must never be read as '
                                 "an option of the synthesizer")
        return command


class AlsaAudioConfig(StrictModel):
    type: Literal["alsa_audio"]
    device: str = "default"
    # {device} is the ALSA device, {files} expands to the clips to play, in order.
    player: list[str] = Field(
        default_factory=lambda: ["aplay", "-q", "-D", "{device}", "{files}"], min_length=1
    )
    outdoor: bool = False
    amplifier: AmplifierConfig | None = None
    tts: TtsConfig = Field(default_factory=TtsConfig)
    work_dir: str = "/var/lib/fieldgate/tts"
    max_activation: Seconds = Field(default=300.0, gt=0, le=HARD_MAX_ACTIVATION_S)

    @property
    def is_siren(self) -> bool:
        return False

    @field_validator("player")
    @classmethod
    def _player_takes_files(cls, value: list[str]) -> list[str]:
        if "{files}" not in value:
            raise ValueError("player must contain the argument {files}")
        return value


class RtpMulticastConfig(StrictModel):
    type: Literal["rtp_multicast"]
    group: str = Field(description="IPv4 multicast group (or a unicast address for a single speaker)")
    port: int = Field(default=5004, ge=1, le=65535)
    ttl: int = Field(default=4, ge=1, le=255)
    interface: str | None = Field(default=None, description="IPv4 address of the interface to send from")
    outdoor: bool = True
    max_activation: Seconds = Field(default=300.0, gt=0, le=HARD_MAX_ACTIVATION_S)
    tts: TtsConfig = Field(default_factory=TtsConfig)
    work_dir: str = "/var/lib/fieldgate/tts"

    @property
    def is_siren(self) -> bool:
        return False

    @field_validator("group", "interface")
    @classmethod
    def _ipv4(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.IPv4Address(value)
        return value


class HttpTriggerConfig(StrictModel):
    type: Literal["http_trigger"]
    # Placeholders: {alert_id} {status} {clip} {zones}
    url: str = Field(pattern=r"^https?://")
    method: Literal["GET", "POST", "PUT"] = "POST"
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    cancel_url: str | None = Field(default=None, pattern=r"^https?://")
    cancel_method: Literal["GET", "POST", "PUT", "DELETE"] = "POST"
    cancel_body: str | None = None
    timeout: Seconds = Field(default=3.0, gt=0, le=30)
    outdoor: bool = True

    @property
    def is_siren(self) -> bool:
        return False


OutputConfig = Annotated[
    SirenRelayConfig | AlsaAudioConfig | RtpMulticastConfig | HttpTriggerConfig,
    Field(discriminator="type"),
]
