"""/metrics text: OpenMetrics that a strict parser reads back to the snapshot's numbers."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from gateway.status.metrics import render_metrics

FULL: dict[str, Any] = {
    "gateway": {"id": "gw-1", "name": 'Dam "North"\nsite', "started": 1_700_000_000.0, "uptime_s": 42.5},
    "points": [{"point": "res.level", "value": 12.25, "unit": "m", "q": "good", "ts": 1.0, "age_s": 0.5},
               {"point": "res.temp", "value": None, "unit": "degC", "q": "comm_fail", "ts": 1.0, "age_s": 9.0},
               {"point": "gate", "value": True, "unit": "", "q": "good", "ts": 1.0, "age_s": 1.0}],
    "devices": [{"bus": "rtu", "device": "gauge", "unit_id": 7, "online": True, "polls": 100, "errors": 3},
                {"bus": "rtu", "device": "rain", "unit_id": 8, "online": False, "polls": 50, "errors": 50}],
    "links": [{"name": "county", "type": "mqtt", "connected": True, "sent_messages": 9, "failed_sends": 1,
               "backlog": 4, "sent_bytes": 2048},
              {"name": "sat", "type": "beidou", "connected": False, "sent_messages": 0, "failed_sends": 2,
               "refused_acks": 3, "suppressed_replies": 5, "foreign_messages": 6}],
    "journal": {"backlog": 4, "committed": 120, "oldest_age_s": 3.5, "drops": 0},
    "alarms": [{"alarm_id": "a1", "rule": "high", "severity": "critical", "state": "active", "since": 1.0},
               {"alarm_id": "a2", "rule": "low", "severity": "critical", "state": "active", "since": 2.0},
               {"alarm_id": "a3", "rule": "x", "severity": "warning", "state": "cleared", "since": 3.0}],
    "loops": [{"name": "bus rtu", "overdue": False}, {"name": "journal", "overdue": True}],
    "counters": {"points_read": 1000, "errors_by_device": {"gauge": 3, "rain": 50, "ghost": 2},
                 "alarms_raised": 3, "inference_ms_last": 84.0, "frames dropped": 7, "flag": True,
                 "readings_by_quality": {"good": 3}},
}

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> tuple[dict[str, str], dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """A strict reading of the OpenMetrics text format (what this exporter uses of it).

    Returns ({family: type}, {(sample name, labels): value}); fails on anything out of order.
    """
    assert text.endswith("# EOF\n"), "must end with # EOF and a newline"
    types: dict[str, str] = {}
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    current = None
    finished: set[str] = set()
    for line in text[: -len("# EOF\n")].splitlines():
        if line.startswith("# "):
            kind, name, rest = line[2:].split(" ", 2)
            assert kind in ("TYPE", "HELP", "UNIT"), line
            if kind == "TYPE":
                assert name not in types, f"family {name} described twice"
                if current is not None:
                    finished.add(current)
                types[name], current = rest, name
            else:
                assert name == current, f"{kind} for {name} outside its family"
                if kind == "UNIT":
                    assert name.endswith("_" + rest), "a family with a unit ends in it"
            continue
        match = _SAMPLE.match(line)
        assert match, f"bad sample line {line!r}"
        name, _, labels_text, value_text = match.groups()
        assert current is not None and name.startswith(current) and current not in finished, line
        suffix = name[len(current):]
        assert suffix == {"counter": "_total", "info": "_info"}.get(types[current], ""), line
        labels = frozenset(_LABEL.findall(labels_text or ""))
        if labels_text:
            assert ",".join(f'{k}="{v}"' for k, v in _LABEL.findall(labels_text)) == labels_text, line
        key = (name, labels)
        assert key not in samples, f"duplicate sample {line}"
        samples[key] = float(value_text)
    return types, samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def test_full_snapshot_reads_back() -> None:
    types, samples = parse(render_metrics(FULL))
    assert types["fieldgate_points_read"] == "counter"
    assert value(samples, "fieldgate_points_read_total") == 1000
    assert value(samples, "fieldgate_device_errors_total", bus="rtu", device="rain") == 50
    assert value(samples, "fieldgate_device_errors_total", bus="", device="ghost") == 2
    assert value(samples, "fieldgate_device_online", bus="rtu", device="rain") == 0
    assert value(samples, "fieldgate_journal_backlog") == 4
    assert value(samples, "fieldgate_journal_oldest_age_seconds") == 3.5
    assert value(samples, "fieldgate_journal_drops_total") == 0
    assert value(samples, "fieldgate_link_connected", link="sat", type="beidou") == 0
    assert value(samples, "fieldgate_link_sent_messages_total", link="county") == 9
    assert value(samples, "fieldgate_link_sent_bytes_total", link="county") == 2048
    assert value(samples, "fieldgate_link_failed_sends_total", link="sat") == 2
    assert value(samples, "fieldgate_link_refused_acks_total", link="sat") == 3
    assert value(samples, "fieldgate_link_suppressed_replies_total", link="sat") == 5
    assert value(samples, "fieldgate_link_foreign_messages_total", link="sat") == 6
    assert ("fieldgate_link_refused_acks_total", frozenset({("link", "county")})) not in samples  # MQTT: no sample
    assert value(samples, "fieldgate_alarms_raised_total") == 3
    assert value(samples, "fieldgate_alarms", severity="critical", state="active") == 2
    assert value(samples, "fieldgate_inference_last_seconds") == pytest.approx(0.084)
    assert value(samples, "fieldgate_loop_overdue", loop="journal") == 1
    assert value(samples, "fieldgate_point_value", point="res.level", unit="m") == 12.25
    assert value(samples, "fieldgate_point_value", point="gate", unit="") == 1
    assert ("fieldgate_point_value", frozenset({("point", "res.temp"), ("unit", "degC")})) not in samples
    assert value(samples, "fieldgate_point_good", point="res.temp") == 0
    assert value(samples, "fieldgate_daemon_counter", name="frames_dropped") == 7
    assert value(samples, "fieldgate_gateway_info", id="gw-1", name='Dam \\"North\\"\\nsite') == 1


@pytest.mark.parametrize("snapshot", [{}, {"gateway": None, "points": "nonsense", "devices": [None, 3],
                                           "links": [{}], "journal": [], "counters": {"points_read": "x"}}])
def test_missing_or_malformed_sections_give_valid_output(snapshot: dict[str, Any]) -> None:
    types, samples = parse(render_metrics(snapshot))
    assert samples == {} and types == {}


def test_special_floats_use_openmetrics_spelling() -> None:
    text = render_metrics({"points": [{"point": "p", "value": math.inf, "q": "good", "age_s": math.nan}]})
    assert 'fieldgate_point_value{point="p",unit=""} +Inf' in text
    assert 'fieldgate_point_age_seconds{point="p"} NaN' in text


def test_prometheus_client_parser_accepts_it() -> None:
    parser = pytest.importorskip("prometheus_client.openmetrics.parser")
    families = {f.name: f for f in parser.text_string_to_metric_families(render_metrics(FULL))}
    assert families["fieldgate_points_read"].samples[0].value == 1000
    errors = {s.labels["device"]: s.value for s in families["fieldgate_device_errors"].samples}
    assert errors == {"gauge": 3, "rain": 50, "ghost": 2}
    assert families["fieldgate_journal_oldest_age_seconds"].unit == "seconds"
    assert families["fieldgate_gateway"].samples[0].labels["name"] == 'Dam "North"\nsite'
