"""The `fieldgate` payload profile: JSON envelopes and topics (documented in docs/payloads.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from gateway.journal import JournalRecord
from gateway.journal.batch import Run
from gateway.shared import OutboundMessage, RecordClass

ENVELOPE_VERSION = 1
# A record sent this long after it was taken is marked historical (replayed after an outage);
# configurable as journal.historical_after (docs/durability.md).
HISTORICAL_AFTER = 30.0

# The topic a class goes to is named after it; state changes share the telemetry topic.
TOPIC_KIND = {cls: (RecordClass.TELEMETRY if cls is RecordClass.STATE else cls).label for cls in RecordClass}


class FieldgateProfile:
    def __init__(self, gateway_id: str, topic_prefix: str = "fieldgate/v1",
                 historical_after: float = HISTORICAL_AFTER) -> None:
        self.gateway_id = gateway_id
        self.historical_after = historical_after
        self.base = f"{topic_prefix.rstrip('/')}/{gateway_id}"

    def topic(self, kind: str) -> str:
        return f"{self.base}/{kind}"

    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]:
        """One message per topic kind, records in journal order; each record carries its seq."""
        sent_at = time.time() if now is None else now
        by_kind: dict[str, list[JournalRecord]] = {}
        for record in records:
            by_kind.setdefault(TOPIC_KIND[record.cls], []).append(record)
        messages = []
        head = self._head()

        for kind, group in by_kind.items():
            items = [self._item(record, sent_at) for record in group]
            messages.append(OutboundMessage(self.topic(kind), (head + ",".join(items) + "]}").encode(),
                                            tuple(r.seq for r in group)))
        return messages

    def encode_runs(self, runs: Sequence[Run], now: float | None = None) -> list[OutboundMessage]:
        """``encode`` of the runs' records, the same bytes: a run is one slice of its batch's ``wire`` texts (its
        records with their seqs), joined (and for ``hist`` one ``replace``), not a splice per record."""
        sent_at = time.time() if now is None else now
        by_kind: dict[str, tuple[list[str], list[int]]] = {}
        for run in runs:
            texts, seqs = by_kind.setdefault(TOPIC_KIND[run.cls], ([], []))
            hist = sent_at - run.created > self.historical_after
            wire = run.wire()
            if wire is None:  # a batch that cannot be spliced whole: record by record, as ``encode``
                texts += [self._item(record, sent_at) for record in run.records()]
            elif hist:  # "\n" (never raw in compact JSON) marks where each record ends
                texts.append(("\n".join(wire) + "\n").replace("}\n", _HIST_AT_END)[:-1])
            else:
                texts += wire
            seqs += run.seqs
        head = self._head()
        return [OutboundMessage(self.topic(kind), (head + ",".join(texts) + "]}").encode(), tuple(seqs))
                for kind, (texts, seqs) in by_kind.items()]

    def _head(self) -> str:
        return '{"v":' + str(ENVELOPE_VERSION) + ',"gw":' + _dumps(self.gateway_id).decode() + ',"records":['

    def _item(self, record: JournalRecord, sent_at: float) -> str:
        """One record of the envelope: its body with its seq (and ``hist``) added.

        The body as the journal stored it is spliced, not decoded and encoded again; the bytes are what
        ``json.dumps`` of the body dict with ``seq``/``hist`` appended gives (same separators, UTF-8).
        """
        hist = sent_at - record.created > self.historical_after
        text = record.text
        if text is None or not text.endswith("}") or '"seq":' in text or '"hist":' in text:
            item = dict(record.body)
            item["seq"] = record.seq
            if hist:
                item["hist"] = True
            return _dumps(item).decode()
        sep = "," if len(text) > 2 else ""
        return text[:-1] + sep + '"seq":' + str(record.seq) + (_HIST if hist else "") + "}"

    def status(self, state: str, **extra: Any) -> bytes:
        return _dumps({"v": ENVELOPE_VERSION, "gw": self.gateway_id, "state": state,
                       "ts": round(time.time(), 3), **extra})


_HIST = ',"hist":true'
_HIST_AT_END = _HIST + "},"  # a record's closing brace in ``wire`` text ("}\n"), with ``hist`` added


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
