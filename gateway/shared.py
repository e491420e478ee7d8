"""Types shared by the gateway core and the drivers.

This is the only gateway module a driver may import (see docs/architecture.md).
It holds the reading that flows down the data path, the record classes the
journal orders by, the base model every config section derives from, and the
small protocols through which drivers hand data to the core. What the core uses of a driver object
(a bus, a link, a camera) is in ``gateway.contracts``.
"""

from __future__ import annotations

import enum
import math
import re
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, Protocol, cast, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable.

    A model's validator is built when it is first used, not when its class is made (``defer_build``): a
    site's sections are checked by the site model's one validator, so the validators each section model
    would also get of its own were built for nothing (about 1.3 MB on the demo site; issue 18, memory).
    A model validated on its own at run time (an alert, a command's arguments) builds its own on first
    use, in about a millisecond."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


ConfigPath = tuple[str | int, ...]


class PlacedConfigError(ValueError):
    """Config problems found across fields or sections, each at the path of the value at fault.

    Raised from a model validator with paths from that model (from the site config's,
    ``("commands", "write_points", 0)`` is the document root's); the loader prints each as
    ``file:line:column`` of the value. A check collects every problem and raises once, so the
    technician sees all of them, not the first.
    """

    def __init__(self, problems: list[tuple[ConfigPath, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(message for _path, message in problems))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_DURATION_HINT = "write e.g. 5s, 500ms, 2m, 1h or a number of seconds"


def _parse_duration(value: object) -> object:
    """Accept 5, 0.5, "500ms", "5s", "2m", "1h", "7d"; a bare number means seconds.

    Negative and non-finite numbers are refused here rather than by a ``ge=0`` in the type, so a
    field's own bounds (``ge=10``) are the only ones pydantic applies after this.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, not a boolean; {_DURATION_HINT}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value} is not a duration; {_DURATION_HINT}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"'{value[:40]}' is not a duration; {_DURATION_HINT}")
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value  # anything else: the float validation after this refuses it


def parse_duration(text: str) -> float:
    """A duration flag of a command (``--timeout 500ms``, ``--expires 1h``): the config's own syntax."""
    seconds = _parse_duration(text)
    assert isinstance(seconds, float)  # a str either parses to seconds or raises ValueError
    return seconds


class WrittenWithUnit:
    """JSON Schema of a number that YAML may also give as text with a unit (`5s`, `512MiB`), so an
    editor using `fieldgate schema` does not flag `poll_interval: 5s`.

    The field's bounds go on the number. Behind a before-validator pydantic leaves them under its own
    names (ge, gt, …), which JSON Schema does not know: they are renamed here.
    """

    _KEYWORDS: ClassVar[dict[str, str]] = {
        "ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        number = handler(schema)
        for ours, theirs in self._KEYWORDS.items():
            if ours in number:
                number[theirs] = number.pop(ours)
        if "minimum" not in number and "exclusiveMinimum" not in number:
            number["minimum"] = 0
        return {"anyOf": [number, {"type": "string", "pattern": self.pattern}]}

    def __repr__(self) -> str:
        return f"WrittenWithUnit({self.pattern!r})"


# The one duration type of the config. Every time a technician writes is a Seconds field named
# without a unit (`reopen_delay: 5s`, not `reopen_delay_s`), given as a number of seconds or with a
# unit (ms, s, m, h, d); tests/unit/test_config_vocabulary.py keeps it so.
Seconds = Annotated[float, BeforeValidator(_parse_duration), WrittenWithUnit(_DURATION.pattern)]

# Config text that becomes part of an MQTT topic must not change what the topic means: `fieldgate/+`
# would publish to a wildcard and subscribe to every gateway's commands. So no wildcard (+ #), no empty
# level, no leading $ (the broker's own $SYS tree), no space or control character (MQTT forbids NUL).
# The pattern is what `fieldgate schema` shows editors; the check says which rule a value breaks.
_CONTROL = r"\x00-\x1f\x7f-\x9f"
_TOPIC_CHAR = rf"[^/+#\s{_CONTROL}]"
TOPIC_PREFIX_PATTERN = rf"^[^$/+#\s{_CONTROL}]{_TOPIC_CHAR}*(/{_TOPIC_CHAR}+)*/?$"  # a trailing / is dropped
MAX_TOPIC_PREFIX = 128  # brokers commonly cap whole topics at 256 bytes; the gateway id and kind follow
PLAIN_TEXT_PATTERN = rf"^[^{_CONTROL}]*$"


def _topic_prefix(value: str) -> str:
    if len(value) <= MAX_TOPIC_PREFIX and re.fullmatch(TOPIC_PREFIX_PATTERN, value):
        return value
    raise ValueError(f"{value[:40]!r} cannot start MQTT topics: {_topic_problem(value)}")


def _topic_problem(value: str) -> str:
    if not value:
        return "it is empty"
    if len(value) > MAX_TOPIC_PREFIX:
        return f"it is {len(value)} characters long (at most {MAX_TOPIC_PREFIX})"
    for wildcard in "+#":
        if wildcard in value:
            return f"'{wildcard}' is an MQTT wildcard"
    if value.startswith("$"):
        return "topics that start with '$' belong to the broker ($SYS)"
    odd = next((ch for ch in value if ch.isspace() or re.match(f"[{_CONTROL}]", ch)), None)
    if odd is not None:
        return f"it holds {odd!r} (a space or control character)"
    return "it has an empty level (a leading or doubled '/')"


# The start of every topic of an MQTT link (topic_prefix).
TopicPrefix = Annotated[str, AfterValidator(_topic_prefix),
                        Field(json_schema_extra={"pattern": TOPIC_PREFIX_PATTERN, "maxLength": MAX_TOPIC_PREFIX})]
# A name in topics, status, metrics and logs (gateway id, link names): one plain topic level.
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# Free text sent to a platform (ThingsBoard device names and types, client ids): no control characters.
PlainText = Annotated[str, Field(pattern=PLAIN_TEXT_PATTERN)]

# The journal classes by the names YAML (`classes:`), stats and logs use: RecordClass's names in
# lower case (RecordClass.label), spelled here once; tests/unit/test_names_defined_once.py keeps the two in step.
RecordClassName = Literal["alarm", "evidence", "event", "state", "telemetry", "bulk"]
RECORD_CLASS_NAMES: tuple[RecordClassName, ...] = get_args(RecordClassName)
# The payload profiles a link may use (profile:); gateway/profiles/ implements each.
PayloadProfileName = Literal["fieldgate", "thingsboard"]


class ReportPolicy(StrictModel):
    """Report-by-exception for one point (owned by gateway/report.py, configured beside the point)."""

    deadband: float | None = Field(default=None, ge=0, description="absolute change that is reported")
    deadband_percent: float | None = Field(
        default=None, ge=0, le=100, description="change relative to the last reported value, in percent"
    )
    heartbeat: Seconds = Field(default=300.0, description="report at least this often even without change")

    @model_validator(mode="after")
    def _one_deadband(self) -> ReportPolicy:
        if self.deadband is not None and self.deadband_percent is not None:
            raise ValueError("give either deadband or deadband_percent, not both")
        return self


class SatellitePolicy(StrictModel):
    """How a satellite link is scheduled (owned by gateway/satellite.py, configured on the link)."""

    classes: list[RecordClassName] = Field(
        default=["alarm"], description="journal classes it carries; bulk (snapshots) never fits a satellite message")
    failover_after: Seconds = Field(default=60.0, description="every primary link down this long → send")
    budget_bytes_per_hour: int | None = Field(default=None, ge=1)
    budget_bytes_per_day: int | None = Field(default=None, ge=1)
    cost_per_message: float = Field(default=0.0, ge=0, description="for the operator's bill estimate")
    app_ack: bool = Field(default=True, description="keep records until the platform's compact ACK names them")
    ack_timeout: Seconds = Field(default=900.0, gt=0, description="send again if no ACK came by then")
    send_timeout: Seconds = Field(default=300.0, gt=0, description="longest a send may wait (interval, retries)")


@dataclass(frozen=True, slots=True)
class PointInfo:
    """What the core needs to know about a point a driver produces."""

    id: str
    unit: str = ""
    report: ReportPolicy = field(default_factory=ReportPolicy)


class Quality(enum.StrEnum):
    """Why a value can or cannot be trusted. Travels with every reading upstream."""

    GOOD = "good"
    COMM_FAIL = "comm_fail"  # the device did not answer (timeout, port gone, connection refused)
    BAD_FRAME = "bad_frame"  # it answered with something we could not use (CRC, short, wrong unit)
    DEVICE_ERROR = "device_error"  # it answered with a Modbus exception or an error code
    OUT_OF_RANGE = "out_of_range"  # decoded, but outside the configured valid range: no value sent
    STALE = "stale"  # no fresh sample within the point's staleness bound
    UNCERTAIN = "uncertain"  # the device flags the value itself as questionable


class RecordClass(enum.IntEnum):
    """Journal classes. Lower number = higher priority (alarm first, bulk last)."""

    ALARM = 0
    EVIDENCE = 1  # command replies and broadcast evidence share this priority
    EVENT = 2
    STATE = 3
    TELEMETRY = 4
    BULK = 5

    @property
    def label(self) -> RecordClassName:
        """The class's name in YAML, stats and logs: "alarm" … "bulk"."""
        return cast(RecordClassName, self.name.lower())

    @classmethod
    def named(cls, label: str) -> RecordClass:
        """The class called ``label`` ("alarm" … "bulk"); KeyError for any other name."""
        if label not in RECORD_CLASS_NAMES:
            raise KeyError(label)
        return cls[label.upper()]


Value = float | int | bool | str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample of one point.

    ``value`` is None whenever ``quality`` is not GOOD (or UNCERTAIN): a failed read
    never carries a stale number. ``source_time`` is the wall-clock time (UTC epoch
    seconds) at which the sample was taken on the box. ``seq`` is the per-gateway
    sequence number, stamped by the journal when the reading is committed (so it is
    monotonic across restarts and contiguous for what was journalled); it is None
    before that.
    """

    point: str
    value: Value
    quality: Quality
    source_time: float
    unit: str = ""
    seq: int | None = None
    historical: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD

    def with_seq(self, seq: int) -> Reading:
        return replace(self, seq=seq)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "point": self.point,
            "value": self.value,
            "unit": self.unit,
            "q": self.quality.value,
            "ts": round(self.source_time, 3),
        }
        if self.seq is not None:
            out["seq"] = self.seq
        if self.historical:
            out["hist"] = True
        if self.attrs:
            out["attrs"] = self.attrs
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reading:
        return cls(
            point=str(data["point"]),
            value=data.get("value"),
            quality=Quality(data["q"]),
            source_time=float(data["ts"]),
            unit=str(data.get("unit", "")),
            seq=data.get("seq"),
            historical=bool(data.get("hist", False)),
            attrs=dict(data.get("attrs", {})),
        )


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A non-reading journal record: an alarm transition, broadcast evidence, a detection, a command.

    ``key`` names what it is about (rule id, output, camera, command id) and plays the role of
    ``Reading.point`` in the journal (replay order, thinning).
    """

    kind: str
    key: str
    body: dict[str, Any]
    source_time: float

    @property
    def point(self) -> str:
        return self.key

    def to_json(self) -> dict[str, Any]:
        # kind/key/ts are the record's own and win over body keys of the same name.
        return {**self.body, "kind": self.kind, "key": self.key, "ts": round(self.source_time, 3)}


class Journalable(Protocol):
    """What the journal stores: a Reading or an EventRecord."""

    @property
    def point(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


def now() -> float:
    """Wall-clock time for source timestamps (one place to change for GNSS time later)."""
    return time.time()


# A driver hands readings to the core through this callable, the readings of one read at a time (a Modbus
# block, a serial line, the points of a device that did not answer): one hand-off per poll, not per point.
# It may block (await) when the journal is behind: that back-pressure is deliberate, memory stays bounded.
ReadingSink = Callable[[Sequence[Reading]], Awaitable[None]]


class Progress(Protocol):
    """Liveness hook: every long-running loop calls ``beat()`` each time it makes progress.

    The systemd watchdog pings only while every registered loop has beaten within its deadline.
    """

    def beat(self) -> None: ...


class NullProgress:
    def beat(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """What a link is asked to carry: one or more journal records, already encoded."""

    topic: str
    payload: bytes
    seqs: tuple[int, ...]


FLOAT32_MAX = 3.4028234663852886e38


def float32_decimal(x: float) -> float:
    """The shortest decimal that reads back as the same float32 as ``x`` (131.27000427246094 -> 131.27).

    A float32 register holds about 7 significant digits; widened to a double it shows digits the
    device never measured, and the compact satellite codec would have to carry all 8 bytes of them.
    Both sides use this one rule (the Modbus decoder, the compact F32 form), so a value reads the same
    whichever way it travelled. Non-finite values and values beyond float32's range are returned as is.
    """
    if not math.isfinite(x) or abs(x) > FLOAT32_MAX:
        return x
    packed = struct.pack(">f", x)
    f32 = struct.unpack(">f", packed)[0]  # x rounded to float32 (5e-324 is 0.0): its digits, not x's
    for digits in range(1, 10):  # 9 significant digits always round-trip a float32
        candidate = float(f"{f32:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == packed:
                return candidate
        except OverflowError:  # rounded up past float32's largest value
            continue
    return x
