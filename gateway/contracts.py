"""Everything the core uses of a driver object: a bus, a link, a satellite link, a camera, an inference backend.

The core reaches drivers only through these protocols (and ``gateway.alerts.contract`` for broadcast
outputs): no ``getattr``/``hasattr`` probing, so a member a driver lacks is a mypy error, not a silent
default at run time. A driver implements every member of its role's protocol; where a member means
nothing for a driver (a serial-line gauge cannot be written; Iridium has no service interval) the
protocol says what the driver returns instead. Like ``gateway.shared``, this module imports nothing
else from the core, so drivers may import it (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gateway.shared import OutboundMessage, PointInfo, Progress, ReadingSink, SatellitePolicy, Value

if TYPE_CHECKING:  # numpy comes with the vision extra; the protocols only name its types
    import numpy as np
    import numpy.typing as npt

    from gateway.profiles.options import ThingsboardOptions


# ---- buses ------------------------------------------------------------------------------------------


class PointSettings(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def valid_min(self) -> float | None:
        """Below this a reading is out of range (commissioning's plausibility check); None: no bound."""
        ...

    @property
    def valid_max(self) -> float | None: ...


class DeviceSettings(Protocol):
    """What the core reads of a device in a bus's config section (the relay-board guard)."""

    @property
    def name(self) -> str: ...

    @property
    def unit_id(self) -> int | None: ...

    @property
    def points(self) -> Sequence[PointSettings]: ...


class BusSettings(Protocol):
    """What the core reads of a bus's config section (``buses:``)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def devices(self) -> Sequence[DeviceSettings]: ...


class DeviceStatus(Protocol):
    """One field device as its bus sees it, for the status page and /metrics."""

    @property
    def name(self) -> str: ...

    @property
    def unit_id(self) -> int | None:
        """The Modbus unit id; None on a bus without unit addressing (serial-line gauges)."""
        ...

    @property
    def mode(self) -> str:
        """online | suspect | offline."""
        ...

    @property
    def polls(self) -> int: ...

    @property
    def good_polls(self) -> int: ...


def stall_deadline(slowest_poll_s: float, worst_wait_s: float) -> float:
    """How long a healthy bus may go without progress: its slowest cycle plus every timeout, with margin."""
    return max(60.0, 2 * (slowest_poll_s + worst_wait_s))


class BusDriver(Protocol):
    """A field bus (one serial port or one TCP endpoint) and the one task that owns it."""

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    @property
    def writable(self) -> bool:
        """True if ``write_point`` and ``probe`` reach the devices (Modbus); False: both raise (a serial line)."""
        ...

    @property
    def devices(self) -> Sequence[DeviceStatus]: ...

    @property
    def stall_deadline(self) -> float:
        """Seconds the bus may go without a progress beat before the watchdog calls it stuck."""
        ...

    def points(self) -> list[PointInfo]: ...

    async def run(self, sink: ReadingSink, progress: Progress) -> None:
        """Poll forever, handing every sample (good or not) to ``sink``, the samples of one read in one call.
        Never returns normally."""
        ...

    async def write_point(self, point_id: str, value: float | bool | str, verify: bool = True) -> Value:
        """Write a configured point through the bus's own task; returns the value read back."""
        ...

    async def probe(self, unit_id: int, table: str, address: int, count: int = 1) -> list[int]:
        """Raw registers of any unit on the line (the technician's probe on the status page)."""
        ...


# ---- links ------------------------------------------------------------------------------------------


class Uplink(Protocol):
    """What every uplink offers. ``send`` returns once the far side acknowledged (e.g. MQTT PUBACK)."""

    @property
    def name(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def run(self, progress: Progress) -> None: ...

    async def send(self, message: OutboundMessage) -> None: ...


class JournalLink(Uplink, Protocol):
    """An uplink a link runner feeds from the journal (its own cursor and class filter)."""

    @property
    def window(self) -> int:
        """Messages it takes in flight at once now (MQTT: lowered to the broker's Receive Maximum); 0 when
        the link sets no limit of its own (the runner's ``max_inflight`` applies)."""
        ...


class PrimaryLink(JournalLink, Protocol):
    """A primary (IP) link to the platform: fed by a link runner from the journal, carries command replies."""

    announce_offline_on_stop: bool  # False while the daemon reloads: the platform should not see a flap

    @property
    def commands_dropped(self) -> Mapping[str, int]:
        """Command messages dropped before handling, by reason (for the status page)."""
        ...

    async def publish_reply(self, topic_suffix: str, payload: bytes, expiry_s: float | None = None) -> None: ...


class SatelliteLink(Uplink, Protocol):
    """A satellite modem: small messages, a service interval, a per-message cost."""

    @property
    def max_bytes(self) -> int:
        """Bytes one message carries (the configured figure, or what the card says once read)."""
        ...

    @property
    def interval_s(self) -> float:
        """The shortest gap between two sends (BeiDou: the card's service interval); 0.0 when there is none."""
        ...

    @property
    def foreign_count(self) -> int | None:
        """Messages dropped because they came from a sender that is not the platform; None if not counted."""
        ...


@runtime_checkable
class IdentifiedModem(Protocol):
    """A satellite link that can say which card or modem it drives (the fleet inventory); optional."""

    def modem_identity(self) -> dict[str, Any]:
        """E.g. ``{"card_id": 1234}`` (BeiDou); values are None until the modem has said them."""
        ...


class PrimaryLinkSettings(Protocol):
    """What the core reads of a primary link's config section (``links:``, drivers/mqtt/config.py)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def classes(self) -> Sequence[str]:
        """The journal classes it carries (alarm, evidence, ...)."""
        ...

    @property
    def profile(self) -> str: ...

    @property
    def topic_prefix(self) -> str: ...

    @property
    def thingsboard(self) -> ThingsboardOptions: ...

    @property
    def batch_records(self) -> int: ...

    @property
    def max_inflight(self) -> int: ...

    @property
    def reconnect_max(self) -> float: ...


class RecordEncoder(Protocol):
    """Journal records -> the messages a link sends (a payload profile, or a report link's own encoder)."""

    def encode(self, records: Sequence[Any], now: float | None = None) -> list[OutboundMessage]: ...


class ReportLink(JournalLink, Protocol):
    """A link that reports to a third party rather than the platform (SL 651 to a flood-control centre):
    fed from the journal like a primary, but no commands, not a primary for satellite failover, and it
    encodes records its own way."""

    @property
    def encoder(self) -> RecordEncoder: ...

    @property
    def stall_deadline(self) -> float:
        """Seconds its loop may go without progress before the watchdog counts it as stalled."""
        ...


class ReportLinkSettings(Protocol):
    """What the core reads of a report link's config section (drivers/sl651/config.py)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def classes(self) -> Sequence[str]: ...

    @property
    def points(self) -> Mapping[str, str]:
        """The site's points it reports, each to its own identifier on the far side."""
        ...

    @property
    def batch_records(self) -> int: ...

    @property
    def max_inflight(self) -> int: ...


class SatelliteLinkSettings(Protocol):
    """What the core reads of a satellite link's config section (drivers/beidou, drivers/iridium)."""

    @property
    def type(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def policy(self) -> SatellitePolicy: ...


@dataclass(frozen=True, slots=True)
class LinkWiring:
    """What the core hands a primary link when it builds one."""

    gateway_id: str
    session: Any  # the link's payload profile (gateway/profiles): topics, subscriptions, will, replies
    on_command: Callable[[str, bytes], Awaitable[None]] | None = None  # (topic, payload) of a command message
    screen: Callable[[str, bytes], bool] | None = None  # is this message a command of ours? asked as it is read


# ---- cameras and inference --------------------------------------------------------------------------


class Frame(Protocol):
    @property
    def image(self) -> npt.NDArray[np.uint8]:
        """HxWx3 BGR."""
        ...

    @property
    def t(self) -> float:
        """Source time, UTC epoch seconds (media time for a lossless file replay)."""
        ...


class FrameSource(Protocol):
    """A camera stream read by its own thread; ``get`` hands over the newest frame."""

    @property
    def ended(self) -> bool:
        """A lossless file replay has delivered its last frame."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def get(self, timeout: float) -> Frame | None: ...


Box = tuple[float, float, float, float, str, float]  # x1, y1, x2, y2, role, score


class CameraDriver(Protocol):
    """Frames in, pictures out: what the vision pipeline uses of the camera driver (built for one camera)."""

    def open(self) -> FrameSource: ...

    def to_gray_small(self, image: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]: ...

    def encode_jpeg(self, image: npt.NDArray[np.uint8], boxes: Sequence[Box], quality: int,
                    max_width: int) -> bytes: ...


class Backend(Protocol):
    """An inference library with one model loaded (runs in the vision worker process)."""

    name: str
    input_hw: tuple[int, int] | None  # fixed model input (height, width), None if dynamic
    output_shapes: list[list[Any]]
    metadata: dict[str, str]

    def run(self, blob: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]: ...

    # Resize lives on the backend: an NPU box can do it in hardware (Rockchip RGA). ``interpolation`` is
    # the manifest's input.resize ("linear", "area", "nearest", "cubic"): the model's training pre-processing.
    def resize(
        self, image: npt.NDArray[np.uint8], width: int, height: int, interpolation: str = "linear"
    ) -> npt.NDArray[np.uint8]: ...

    def split(self, image: npt.NDArray[np.uint8], planes: list[npt.NDArray[np.uint8]]) -> None:
        """De-interleave HxWxC into the C given HxW planes (``gateway.vision.letterbox.numpy_split`` does it
        in plain numpy for a backend without a faster way)."""
        ...


class BackendFactory(Protocol):
    def __call__(self, model_path: Path, *, threads: int, graph_optimization: str) -> Backend: ...
