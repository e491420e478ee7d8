"""`fieldgate rules test CONFIG --replay series.csv`: which alarms a recorded series would raise.

CSV columns (header required): ``time,point,value[,quality][,confirmed]``. ``time`` is epoch
seconds or ISO 8601 (naive = UTC); ``quality`` defaults to good; empty ``value`` means none.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from gateway.rules.clock import RecordedClock
from gateway.rules.config import RulesConfig
from gateway.rules.engine import AlarmTransition, RuleEngine, run_series
from gateway.shared import Quality, Reading, Value

MAX_ROWS = 5_000_000  # a replay is a check, not a data warehouse; refuse absurd inputs


class ReplayError(ValueError):
    """A bad CSV row; the message names the line."""


def _time(text: str, line: int) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReplayError(f"line {line}: time '{text}' is neither epoch seconds nor ISO 8601") from exc
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _value(text: str, line: int) -> Value:
    text = text.strip()
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError as exc:
        raise ReplayError(f"line {line}: value '{text}' is not a number or true/false") from exc


def read_series(csv_path: Path) -> Iterator[Reading]:
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"time", "point", "value"} - set(reader.fieldnames or ())
        if missing:
            raise ReplayError(f"{csv_path}: header lacks column(s) {', '.join(sorted(missing))}")
        last = float("-inf")
        for index, row in enumerate(reader):
            line = index + 2
            if index >= MAX_ROWS:
                raise ReplayError(f"{csv_path}: more than {MAX_ROWS} rows")
            if None in row.values() or not row.get("point"):
                raise ReplayError(f"line {line}: short row or empty point")
            when = _time(row["time"], line)
            if when < last:
                raise ReplayError(f"line {line}: time goes backwards; sort the series by time")
            last = when
            try:
                quality = Quality((row.get("quality") or "good").strip().lower())
            except ValueError as exc:
                raise ReplayError(f"line {line}: unknown quality '{row.get('quality')}'") from exc
            value = _value(row["value"], line) if quality in (Quality.GOOD, Quality.UNCERTAIN) else None
            attrs = {}
            if (row.get("confirmed") or "").strip():
                attrs["confirmed"] = row["confirmed"].strip().lower() in ("1", "true", "yes")
            point = row["point"].strip()
            yield Reading(point=point, value=value, quality=quality, source_time=when, attrs=attrs)


def format_transition(t: AlarmTransition, auto_broadcast: dict[str, str] | None = None) -> str:
    stamp = dt.datetime.fromtimestamp(t.time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    evidence = " ".join(f"{p}={v['value']}({v['q']})" for p, v in t.points.items())
    line = f"{stamp} {t.kind.value.upper():<12} {t.rule_id} [{t.alarm_class.value}/{t.severity}] {evidence}"
    if auto_broadcast and t.kind.value == "raised" and t.rule_id in auto_broadcast:
        line += f"  -> automatic broadcast: {auto_broadcast[t.rule_id]}"
    return line


def replay(rules_config: RulesConfig, csv_path: Path | str,
           auto_broadcast: dict[str, str] | None = None) -> list[str]:
    """Report lines for the series; ``auto_broadcast`` maps rule id -> what the site plan would sound."""
    clock = RecordedClock()  # the engine runs on the series' own time
    engine = RuleEngine(rules_config, clock)
    readings = list(read_series(Path(csv_path)))
    transitions = run_series(engine, clock, readings)
    if readings:
        transitions.extend(engine.tick(readings[-1].source_time))
    lines = [format_transition(t, auto_broadcast) for t in transitions]
    raised = sum(1 for t in transitions if t.kind.value == "raised")
    active = engine.active_alarms()
    still = f": {', '.join(a['rule'] for a in active)}" if active else ""
    lines.append(f"{len(readings)} readings, {raised} alarm(s) raised, {len(active)} active at end{still}")
    return lines
