"""The ``broadcast:`` section: outputs, zones, clips, siren patterns, interlock policy and the site plan."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.alerts.contract import HARD_MAX_ACTIVATION_S
from gateway.alerts.model import CapSeverity, Category, Urgency
from gateway.registry import OutputConfig
from gateway.shared import ConfigPath, PlacedConfigError, Seconds, StrictModel

Name = str

# 人防 (civil air defence) signals are reserved by law (e.g. Guangzhou notice 2024); never imitate them.
# Each entry: (on_s, off_s); a cadence step within the tolerance of one of them is refused.
RESERVED_CADENCES = {"civil-defence pre-warning 36 s on / 24 s off": (36.0, 24.0),
                     "civil-defence air-raid 6 s on / 6 s off": (6.0, 6.0)}
RESERVED_TOLERANCE = 0.25  # ±25 %: "close enough to be mistaken for it" by ear
# The civil-defence all-clear is a 3-minute continuous tone; refuse long continuous tones.
MAX_CONTINUOUS_ON_S = 90.0
# An off gap shorter than this is not heard as a break (a motor siren's rotor runs on through it):
# it joins the tones either side of it into one.
MIN_AUDIBLE_GAP_S = 1.0


def as_played(steps: list[tuple[float, float]], repeat: int) -> list[tuple[float, float]]:
    """The (on, off) pairs a listener hears over the whole activation: every repeat, with each
    inaudible gap folded into the tone around it (including the last step's gap into the next repeat).

    ``[[18, 0], [18, 24]]`` is heard as 36 s on / 24 s off, the civil-defence pre-warning, and
    ``[[45, 0], [45, 0.5], [45, 0], [45, 0]]`` as one tone of 180.5 s, the all-clear.
    """
    heard: list[tuple[float, float]] = []
    on = 0.0
    played = steps * repeat  # at most 32 steps x 1000 repeats
    for index, (step_on, step_off) in enumerate(played):
        on += step_on
        if step_off < MIN_AUDIBLE_GAP_S and index < len(played) - 1:
            on += step_off
            continue
        heard.append((on, step_off))
        on = 0.0
    return heard


def reserved_pattern_problem(steps: list[tuple[float, float]], repeat: int) -> str | None:
    heard = as_played(steps, repeat)
    for name, (on_ref, off_ref) in RESERVED_CADENCES.items():
        for on_s, off_s in set(heard):
            if (abs(on_s - on_ref) <= RESERVED_TOLERANCE * on_ref
                    and abs(off_s - off_ref) <= RESERVED_TOLERANCE * off_ref):
                return f"it is heard as {on_s:g}s on/{off_s:g}s off, which resembles the reserved {name} signal"
    longest = max(on_s for on_s, _ in heard)
    if longest > MAX_CONTINUOUS_ON_S:
        return (f"it is heard as {longest:g} s of continuous tone (off gaps under {MIN_AUDIBLE_GAP_S:g} s do not "
                f"break it), which resembles the reserved civil-defence all-clear (3 min continuous); keep "
                f"continuous tone <= {MAX_CONTINUOUS_ON_S:g} s")
    return None


class PatternConfig(StrictModel):
    steps: list[tuple[Seconds, Seconds]] = Field(min_length=1, max_length=32, description="[on, off] pairs")
    repeat: int = Field(default=1, ge=1, le=1000)

    @field_validator("steps")
    @classmethod
    def _positive(cls, steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for on_s, off_s in steps:
            if on_s <= 0 or off_s < 0 or on_s > 600 or off_s > 600:
                raise ValueError("each step needs 0 < on <= 600 s and 0 <= off <= 600 s")
        return steps

    @model_validator(mode="after")
    def _not_reserved(self) -> PatternConfig:
        problem = reserved_pattern_problem(self.steps, self.repeat)
        if problem:
            raise ValueError(f"siren pattern refused: {problem}")
        return self


class StatusPatterns(StrictModel):
    """Status decides the siren pattern; Exercise must sound different from Actual."""

    actual: Name
    exercise: Name
    test: Name | None = Field(default=None, description="indoor sirens only: Test never drives outdoor sirens")

    @model_validator(mode="after")
    def _distinct(self) -> StatusPatterns:
        if self.actual == self.exercise:
            raise ValueError("the Exercise siren pattern must differ from the Actual one")
        return self


class AnnounceClips(StrictModel):
    """Clips played *before* any Exercise/Test message ("这是演练" / "这是测试")."""

    exercise: Name
    test: Name


class ClipConfig(StrictModel):
    file: str = Field(min_length=1, description="WAV file (recorded human voice for fixed messages)")


class ZoneConfig(StrictModel):
    outputs: list[Name] = Field(min_length=1)
    description: str = ""


class ExerciseWindow(StrictModel):
    """A scheduled, pre-announced exercise: Exercise alerts sound only inside one of these."""

    start: dt.datetime
    end: dt.datetime

    @model_validator(mode="after")
    def _ordered(self) -> ExerciseWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("exercise window times need a UTC offset, e.g. 2026-05-12T10:00:00+08:00")
        if not self.start < self.end <= self.start + dt.timedelta(days=1):
            raise ValueError("an exercise window must end after it starts, within one day")
        return self


class RateLimitConfig(StrictModel):
    min_interval: Seconds = Field(default=300.0, description="per zone, between two activations")
    max_per_hour: int = Field(default=6, ge=1, le=60)


class AutomaticTrigger(StrictModel):
    """Site plan entry: this pre-approved rule may trigger this broadcast without a person."""

    rule: str = Field(min_length=1)
    zones: list[Name] = Field(min_length=1)
    event: str = Field(min_length=1, max_length=200)
    clips: list[Name] = Field(default_factory=list, max_length=8)
    tts: str | None = Field(default=None, max_length=200, description="e.g. '当前水位{value}米'")
    category: Category = "Safety"
    urgency: Urgency = "Immediate"
    severity: CapSeverity = "Severe"
    status: Literal["Actual", "Exercise"] = "Actual"
    expires: Seconds = Field(default=3600.0, gt=0)


class BroadcastConfig(StrictModel):
    sender: str = Field(default="fieldgate", pattern=r"^[^\s,<&]{1,128}$")
    outputs: dict[Name, OutputConfig] = Field(default_factory=dict)
    zones: dict[Name, ZoneConfig] = Field(default_factory=dict)
    clips: dict[Name, ClipConfig] = Field(default_factory=dict)
    patterns: dict[Name, PatternConfig] = Field(default_factory=dict)
    status_patterns: StatusPatterns | None = None
    announce: AnnounceClips | None = None
    all_clear_clip: Name | None = None
    exercise_windows: list[ExerciseWindow] = Field(default_factory=list, max_length=100)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    max_activation: Seconds = Field(default=180.0, gt=0, le=HARD_MAX_ACTIVATION_S)
    operators: dict[Name, str] = Field(default_factory=dict, description="operator -> base64 Ed25519 public key")
    two_person_window: Seconds = Field(default=600.0, gt=0, le=3600)
    max_clock_skew: Seconds = Field(default=300.0, description="refuse alerts 'sent' further in the future")
    automatic: list[AutomaticTrigger] = Field(default_factory=list)
    audit_path: str = "/var/lib/fieldgate/audit/broadcast.log"
    inbox_dir: str = "/var/lib/fieldgate/alerts/inbox"
    output_timeout: Seconds = Field(default=10.0, gt=0, le=120)

    @field_validator("operators")
    @classmethod
    def _keys_parse(cls, operators: dict[str, str]) -> dict[str, str]:
        from gateway.alerts.signing import public_key_bytes

        for name, key in operators.items():
            try:
                public_key_bytes(key)
            except ValueError as exc:
                raise ValueError(f"operator {name}: {exc}") from exc
        return operators

    @model_validator(mode="after")
    def _references(self) -> BroadcastConfig:
        """Names used across the section; every problem at the name at fault, all raised at once."""
        problems: list[tuple[ConfigPath, str]] = [
            (("zones", zone, "outputs", i), f"unknown output '{output}'")
            for zone, spec in self.zones.items() for i, output in enumerate(spec.outputs) if output not in self.outputs]
        clip_refs: list[tuple[ConfigPath, str | None]] = [(("all_clear_clip",), self.all_clear_clip)]
        if self.announce:
            clip_refs += [(("announce", "exercise"), self.announce.exercise),
                          (("announce", "test"), self.announce.test)]
        for n, entry in enumerate(self.automatic):
            clip_refs += [(("automatic", n, "clips", i), clip) for i, clip in enumerate(entry.clips)]
            problems += [(("automatic", n, "zones", i), f"unknown zone '{zone}'")
                         for i, zone in enumerate(entry.zones) if zone not in self.zones]
        problems += [(path, f"unknown clip '{clip}'") for path, clip in clip_refs
                     if clip is not None and clip not in self.clips]
        if self.status_patterns:
            sp = self.status_patterns
            problems += [(("status_patterns", role), f"unknown pattern '{pattern}'")
                         for role, pattern in (("actual", sp.actual), ("exercise", sp.exercise), ("test", sp.test))
                         if pattern is not None and pattern not in self.patterns]
        has_siren = any(o.is_siren for o in self.outputs.values())
        if has_siren and self.status_patterns is None:
            problems.append(((), "sirens are configured: status_patterns (actual, exercise) is required"))
        if self.outputs and (self.announce is None or self.all_clear_clip is None):
            problems.append(((), "outputs are configured: announce (exercise/test clips) and all_clear_clip "
                                 "are required"))
        if problems:
            raise PlacedConfigError(problems)
        return self

    def output_kind(self, name: str) -> str:
        return "siren" if self.outputs[name].is_siren else "speaker"
