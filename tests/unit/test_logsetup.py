"""Logging setup: the plain stderr line format, journald detection, and the journal field mapping."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from gateway.logsetup import KeyValueFormatter, journal_handler, setup_logging, under_journald


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[TextIO]:
    with (tmp_path / "stderr.log").open("w+", encoding="utf-8") as stream:
        yield stream


def lines(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def test_stderr_line_carries_structured_context(log_file: TextIO) -> None:
    assert setup_logging(logging.INFO, stream=log_file, env={}) == "stderr"
    log = logging.getLogger("gateway.poll")
    log.warning("no answer from %s", "pump-3", extra={"device": "pump-3", "point": "level"})
    log.error("alarm raised", extra={"alarm_id": "A-17", "link": "mqtt main"})
    log.debug("not shown at INFO")
    assert lines(log_file) == [
        "WARNING gateway.poll: no answer from pump-3 device=pump-3 point=level",
        'ERROR gateway.poll: alarm raised link="mqtt main" alarm_id=A-17',
    ]


def test_one_record_is_one_line_even_with_a_traceback(log_file: TextIO) -> None:
    setup_logging(stream=log_file, env={})
    try:
        raise ValueError("bad frame\nsecond line")
    except ValueError:
        logging.getLogger("drivers.modbus").exception("decode failed", extra={"device": "gauge-1"})
    (line,) = lines(log_file)
    assert line.startswith("ERROR drivers.modbus: decode failed device=gauge-1 exc=")
    assert "ValueError: bad frame\\nsecond line" in line


def test_setup_twice_does_not_duplicate_lines(log_file: TextIO) -> None:
    setup_logging(stream=log_file, env={})
    setup_logging(stream=log_file, env={})
    logging.getLogger("x").info("once")
    assert lines(log_file) == ["INFO x: once"]


def test_journal_stream_must_match_the_stream(log_file: TextIO) -> None:
    info = os.fstat(log_file.fileno())
    assert under_journald({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}, log_file)
    assert not under_journald({"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino + 1}"}, log_file)
    assert not under_journald({}, log_file)
    assert not under_journald({"JOURNAL_STREAM": "garbage"}, log_file)


def test_journal_stream_without_systemd_python_gets_priority_prefix(log_file: TextIO) -> None:
    info = os.fstat(log_file.fileno())
    env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    assert setup_logging(stream=log_file, env=env, prefer_journald=False) == "stderr"
    logging.getLogger("gateway.links").warning("link down", extra={"link": "beidou"})
    assert lines(log_file) == ["<4>WARNING gateway.links: link down link=beidou"]


def test_formatter_quotes_awkward_values() -> None:
    record = logging.LogRecord("g", logging.INFO, __file__, 1, "m", None, None)
    record.device = 'a "b"=c'
    record.point = ""
    assert KeyValueFormatter().format(record) == 'INFO g: m device="a \\"b\\"=c" point=""'


def test_journald_fields_from_extra() -> None:
    pytest.importorskip("systemd.journal", reason="systemd-python not installed; stderr path tested above")
    sent: list[tuple[str, dict[str, Any]]] = []

    def sender(message: str, **fields: Any) -> None:
        sent.append((message, fields))

    handler = journal_handler(sender)
    assert handler is not None
    log = logging.getLogger("gateway.alerts")
    log.propagate = False
    log.addHandler(handler)
    try:
        log.error("siren on", extra={"alarm_id": "A-17", "device": "siren-1", "unrelated": 1})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    ((message, fields),) = sent
    assert message == "siren on"
    assert fields["ALARM_ID"] == "A-17" and fields["DEVICE"] == "siren-1"
    assert fields["PRIORITY"] == "3" and fields["LOGGER"] == "gateway.alerts"
    assert fields["SYSLOG_IDENTIFIER"] == "fieldgate"
    # Every field name must be one journald accepts.
    assert all(name == name.upper() for name in fields), fields
