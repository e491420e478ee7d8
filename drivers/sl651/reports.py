"""The station's reports, built from point values (pure: no I/O, no clock).

* 32H timed report: every mapped point's value as of the mark (report-by-exception: the last reading before
  it), then the supply voltage last as the standard orders it (table 32);
* 33H added report: the rule's trigger points first (table 34), then the others;
* 34H hourly report: ``F4`` 12 five-minute rainfall increments (0.1 mm, an increment over 25.5 mm spills into
  the next step, note e of table C.1) from an accumulated-rainfall point, ``F5`` 12 relative levels (0.01 m
  above ``level_base``), then PT and VT;
* 37H answer: the current values; 38H answer: one element's series between two hours at a step;
* over a channel's byte limit (BeiDou, 77 bytes on a level-3 card) the timed report keeps the most important
  elements that fit (level, rainfall, voltage first: protocols.md §1b "minimal 32H").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from drivers.sl651.body import Body
from drivers.sl651.config import Sl651LinkConfig
from drivers.sl651.elements import BY_CODE, Element, Scalar, Station, TimeStep, measured, quantize
from drivers.sl651.frame import ETX, Direction, Frame
from drivers.sl651.message import Message, encode

MARK = timedelta(minutes=5)
PRIORITY = ("ZU", "Z", "ZB", "PJ", "PT", "PN05", "P1", "Q", "VT")  # kept first when a frame must shrink

Values = Mapping[str, float | None]  # point id -> value (None: not good)


def frame_of(config: Sl651LinkConfig, function: int, serial: int, sent: datetime, elements: Sequence[Element],
             observed: datetime | None) -> Message:
    head: list[Element] = [Element(0xF1, 0xF1, Station(config.address, config.class_byte))]
    if observed is not None:
        head.append(Element(0xF0, 0xF0, observed))
    frame = Frame(Direction.UP, config.centre, config.address, config.password, function, b"", ETX)
    return Message(frame, Body(serial, sent, tuple(head + list(elements))))


def elements_of(config: Sl651LinkConfig, values: Values, first: Sequence[str] = ()) -> list[Element]:
    """The mapped points present in ``values`` as elements: ``first`` points, then table order, VT last."""
    present = [p for p in config.points if p in values]
    order = sorted(present, key=lambda p: (p not in first, config.points[p] == "VT", BY_CODE[config.points[p]].guide))
    return [measured(BY_CODE[config.points[p]].guide, values[p]) for p in order]


def timed(config: Sl651LinkConfig, serial: int, sent: datetime, mark: datetime, values: Values,
          function: int = 0x32) -> Message:
    message = frame_of(config, function, serial, sent, elements_of(config, values), mark)
    return fit(config, message) if function == 0x32 else message


def added(config: Sl651LinkConfig, serial: int, sent: datetime, observed: datetime, values: Values,
          trigger: Sequence[str]) -> Message:
    return frame_of(config, 0x33, serial, sent, elements_of(config, values, first=trigger), observed)


def fit(config: Sl651LinkConfig, message: Message) -> Message:
    """The timed report as is if it fits the channel, else its most important elements that do."""
    limit = config.max_frame_bytes
    if limit is None or len(encode(message)) <= limit or message.body is None:
        return message
    body = message.body
    head, rest = list(body.elements[:2]), list(body.elements[2:])
    rank = {BY_CODE[code].guide: i for i, code in enumerate(PRIORITY)}
    rest.sort(key=lambda e: rank.get(e.ident, len(PRIORITY)))
    kept: list[Element] = []
    for element in rest:
        trial = Message(message.frame, Body(body.serial, body.sent, tuple(head + kept + [element])))
        if len(encode(trial)) <= limit:
            kept.append(element)
    return Message(message.frame, Body(body.serial, body.sent, tuple(head + kept)))


def hourly(config: Sl651LinkConfig, serial: int, sent: datetime, hour_end: datetime,
           marks: Mapping[datetime, Values], values: Values) -> Message | None:
    """34H for the hour ending at ``hour_end`` from the 5-minute marks (the first step is hour start + 5 min)."""
    steps = [hour_end - MARK * (11 - i) for i in range(12)]
    elements: list[Element] = []
    if config.hourly_rain is not None:
        totals = [marks.get(t, {}).get(config.hourly_rain) for t in [steps[0] - MARK, *steps]]
        elements.append(Element(0xF4, 0x60, _rain_steps(totals)))
    if config.hourly_level is not None:
        levels = [marks.get(t, {}).get(config.hourly_level) for t in steps]
        elements.append(Element(0xF5, 0xC0, tuple(_relative(v, config.level_base) for v in levels)))
    if not elements:
        return None
    tail = {p: v for p, v in values.items() if config.points.get(p) in ("PT", "VT")}
    return frame_of(config, 0x34, serial, sent, elements + elements_of(config, tail), steps[0])


def _rain_steps(totals: Sequence[float | None]) -> tuple[Scalar, ...]:
    out: list[Scalar] = []
    spill = Decimal(0)
    for before, after in itertools.pairwise(totals):
        if before is None or after is None or after < before:
            out.append(None)  # unknown (or the gauge was reset): FF = invalid
            spill = Decimal(0)
            continue
        amount = Decimal(str(round(after - before, 1))) + spill
        step = min(amount, Decimal("25.4"))
        spill = amount - step
        out.append(step)
    return tuple(out)


def _relative(level: float | None, base: float) -> Scalar:
    if level is None:
        return None
    cm = round((level - base) * 100)
    return Decimal(cm).scaleb(-2) if 0 <= cm < 0xFFFF else None


def period_answer(config: Sl651LinkConfig, serial: int, sent: datetime, query: Body,
                  marks: Mapping[datetime, Values]) -> Message | None:
    """38H: one element's values at each step between the query's start and end hour, from the 5-min marks."""
    step = next((e.value for e in query.elements if isinstance(e.value, TimeStep)), None)
    wanted = next((e.ident for e in query.elements if e.form == "bare"), None)
    point = next((p for p, code in config.points.items() if BY_CODE[code].guide == wanted), None)
    if query.period is None or step is None or point is None or step.seconds < MARK.total_seconds():
        return None
    start, end = query.period
    pace = timedelta(seconds=step.seconds)
    times: list[datetime] = []
    t = start
    while t <= end and len(times) < 288:
        times.append(t)
        t += pace
    spec = BY_CODE[config.points[point]]
    series = tuple(quantize(spec, marks.get(t, {}).get(point))[1] for t in times)
    negative = any(v is not None and v < 0 for v in series)
    elements = [Element(0x04, 0x18, step), Element(spec.guide, spec.definition(negative), series, form="series")]
    return frame_of(config, 0x38, serial, sent, elements, start)
