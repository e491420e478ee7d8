"""The alert: CAP 1.2 shaped, exportable as CAP 1.2 XML, with a canonical digest operators sign."""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.shared import StrictModel

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
# CAP identifiers and senders must not contain spaces, commas or restricted XML characters.
CAP_TOKEN = r"^[^\s,<&]{1,128}$"


class Status(enum.StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(enum.StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"


Scope = Literal["Public", "Restricted", "Private"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
CapSeverity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]
Category = Literal[
    "Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE", "Other"
]
Origin = Literal["rule", "manual", "remote"]


def cap_time(value: dt.datetime) -> str:
    """CAP dateTime: seconds precision, explicit offset, never 'Z'."""
    return value.replace(microsecond=0).isoformat()  # aware datetimes print "+hh:mm"


class Alert(StrictModel):
    identifier: str = Field(pattern=CAP_TOKEN)
    sender: str = Field(pattern=CAP_TOKEN)
    sent: dt.datetime
    status: Status
    msg_type: MsgType = MsgType.ALERT
    scope: Scope = "Public"
    event: str = Field(min_length=1, max_length=200)
    category: Category = "Safety"
    urgency: Urgency = "Immediate"
    severity: CapSeverity = "Severe"
    certainty: Certainty = "Observed"
    areas: tuple[str, ...] = Field(default=(), max_length=64, description="site zone ids")
    expires: dt.datetime | None = None
    resources: tuple[str, ...] = Field(default=(), max_length=16, description="clip ids")
    references: tuple[str, ...] = Field(
        default=(), max_length=16, description="CAP 'sender,identifier,sent' or a bare identifier"
    )
    headline: str = Field(default="", max_length=200)
    tts: str | None = Field(default=None, max_length=500, description="text spoken after the clips")
    source: Origin = "manual"
    rule_id: str | None = None
    alarm_id: str | None = None

    @field_validator("sent", "expires")
    @classmethod
    def _aware_seconds(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("times need an explicit UTC offset")
        return value.replace(microsecond=0)

    @model_validator(mode="after")
    def _consistent(self) -> Alert:
        if self.msg_type is MsgType.CANCEL and not self.references:
            raise ValueError("a Cancel must reference the alert(s) it cancels")
        if self.msg_type is not MsgType.CANCEL and not self.areas:
            raise ValueError("an Alert or Update needs at least one area (site zone)")
        if self.expires is not None and self.expires <= self.sent:
            raise ValueError("expires must be after sent")
        return self

    @property
    def referenced_ids(self) -> list[str]:
        return [ref.split(",")[1] if ref.count(",") == 2 else ref for ref in self.references]

    def canonical(self) -> bytes:
        """The exact bytes operators sign: sorted-key JSON of every field."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def cap_reference(self) -> str:
        return f"{self.sender},{self.identifier},{cap_time(self.sent)}"

    def to_cap_xml(self, language: str = "zh-CN") -> str:
        import xml.etree.ElementTree as ET  # here: the daemon writes CAP only when it archives an alert

        ET.register_namespace("", CAP_NS)

        def sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
            element = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
            element.text = text
            return element

        root = ET.Element(f"{{{CAP_NS}}}alert")
        sub(root, "identifier", self.identifier)
        sub(root, "sender", self.sender)
        sub(root, "sent", cap_time(self.sent))
        sub(root, "status", self.status.value)
        sub(root, "msgType", self.msg_type.value)
        sub(root, "scope", self.scope)
        if self.references:
            sub(root, "references", " ".join(self.references))
        info = ET.SubElement(root, f"{{{CAP_NS}}}info")
        sub(info, "language", language)
        sub(info, "category", self.category)
        sub(info, "event", self.event)
        sub(info, "urgency", self.urgency)
        sub(info, "severity", self.severity)
        sub(info, "certainty", self.certainty)
        if self.expires is not None:
            sub(info, "expires", cap_time(self.expires))
        if self.headline:
            sub(info, "headline", self.headline)
        for name, value in (("rule", self.rule_id), ("alarm", self.alarm_id), ("source", self.source)):
            if value:
                parameter = ET.SubElement(info, f"{{{CAP_NS}}}parameter")
                sub(parameter, "valueName", f"fieldgate:{name}")
                sub(parameter, "value", value)
        for clip in self.resources:
            resource = ET.SubElement(info, f"{{{CAP_NS}}}resource")
            sub(resource, "resourceDesc", f"clip {clip}")
            sub(resource, "mimeType", "audio/wav")
            sub(resource, "uri", f"clip:{clip}")
        for zone in self.areas:
            area = ET.SubElement(info, f"{{{CAP_NS}}}area")
            sub(area, "areaDesc", zone)
        return ET.tostring(root, encoding="unicode", xml_declaration=True)

    def summary(self) -> dict[str, Any]:
        return {"identifier": self.identifier, "status": self.status.value, "msgType": self.msg_type.value,
                "event": self.event, "areas": list(self.areas), "source": self.source, "digest": self.digest()}
