"""Rule config models: one per rule kind, told apart by ``type`` (YAML section ``rules:``, a list)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.shared import ConfigPath, PlacedConfigError, Quality, Seconds, StrictModel

Severity = Literal["minor", "moderate", "severe", "extreme"]  # CAP 1.2 severities, lower-cased
PointId = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]
RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

FAULT_QUALITIES = (Quality.COMM_FAIL, Quality.BAD_FRAME, Quality.DEVICE_ERROR)


class Persistence(StrictModel):
    """How long a condition must hold before the alarm is raised: continuously for ``duration``,
    or in ``n`` of the last ``m`` samples (e.g. 3 of 5 camera frames). Both may be given."""

    duration: Seconds | None = None
    n: int | None = Field(default=None, ge=1, le=100)
    m: int | None = Field(default=None, ge=1, le=100)

    @model_validator(mode="after")
    def _pair(self) -> Persistence:
        if (self.n is None) != (self.m is None):
            raise ValueError("persistence n and m go together (n of the last m samples)")
        if self.n is not None and self.m is not None and self.n > self.m:
            raise ValueError("persistence n must not exceed m")
        return self


# ---- conditions (usable alone as a rule, or inside all_of / any_of) ----


class ThresholdCondition(StrictModel):
    type: Literal["threshold"]
    point: PointId
    above: float | None = Field(default=None, description="raise at value >= above")
    below: float | None = Field(default=None, description="raise at value <= below")
    hysteresis: float = Field(default=0.0, ge=0, description="clear once back past the level by this")
    within: Seconds = Field(default=300.0, description="in all_of/any_of: older values are unknown")

    @model_validator(mode="after")
    def _one_side(self) -> ThresholdCondition:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above: or below:")
        return self


class RateCondition(StrictModel):
    type: Literal["rate_of_change"]
    point: PointId
    rise_per_min: float | None = Field(default=None, gt=0)
    fall_per_min: float | None = Field(default=None, gt=0)
    window: Seconds = Field(default=300.0, gt=0, le=86400)
    within: Seconds = 300.0

    @model_validator(mode="after")
    def _one_side(self) -> RateCondition:
        if (self.rise_per_min is None) == (self.fall_per_min is None):
            raise ValueError("give exactly one of rise_per_min: or fall_per_min:")
        return self


class DetectionCondition(StrictModel):
    """A vision detection: point ``<camera>.fire`` / ``<camera>.smoke``, value = confidence."""

    type: Literal["detection"]
    point: PointId
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    require_confirmed: bool = Field(default=True, description="only detections with attrs.confirmed true")
    hold: Seconds = Field(default=60.0, gt=0, description="a detection counts this long after it is seen")


Condition = Annotated[ThresholdCondition | RateCondition | DetectionCondition, Field(discriminator="type")]


# ---- rules ----


class _RuleCommon(StrictModel):
    id: RuleId
    severity: Severity = "moderate"
    message: str = Field(default="", max_length=500)
    persistence: Persistence | None = None


class ThresholdRule(_RuleCommon, ThresholdCondition):
    pass


class RateRule(_RuleCommon, RateCondition):
    pass


class DetectionRule(_RuleCommon, DetectionCondition):
    pass


class AllOfRule(_RuleCommon):
    """Every condition true at once (e.g. smoke detected AND gas above a level)."""

    type: Literal["all_of"]
    conditions: list[Condition] = Field(min_length=1, max_length=16)


class AnyOfRule(_RuleCommon):
    type: Literal["any_of"]
    conditions: list[Condition] = Field(min_length=1, max_length=16)


class StaleRule(_RuleCommon):
    """Fault alarm: no good value for ``max_age``. Never drives a broadcast."""

    type: Literal["stale"]
    point: PointId
    max_age: Seconds = Field(gt=0)
    severity: Severity = "minor"


class CommFailRule(_RuleCommon):
    """Fault alarm: ``after`` consecutive failed reads. Never drives a broadcast."""

    type: Literal["comm_fail"]
    point: PointId
    after: int = Field(default=3, ge=1, le=1000)
    qualities: list[Quality] = Field(default_factory=lambda: list(FAULT_QUALITIES), min_length=1)
    severity: Severity = "minor"


Rule = Annotated[
    ThresholdRule | RateRule | DetectionRule | AllOfRule | AnyOfRule | StaleRule | CommFailRule,
    Field(discriminator="type"),
]
FAULT_RULE_TYPES = frozenset({"stale", "comm_fail"})


class RulesConfig(StrictModel):
    """The ``rules:`` section. YAML writes it as a bare list; the model also accepts ``{rules: [...]}``."""

    rules: list[Rule] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: Any) -> Any:
        return {"rules": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _unique_ids(self) -> RulesConfig:
        first: dict[str, int] = {}
        problems: list[tuple[ConfigPath, str]] = []
        for index, rule in enumerate(self.rules):
            if rule.id in first:
                problems.append((("rules", index, "id"),
                                 f"rule id '{rule.id}' is used twice (first at rules[{first[rule.id]}])"))
            first.setdefault(rule.id, index)
        if problems:
            raise PlacedConfigError(problems)
        return self

    def by_id(self) -> dict[str, Rule]:
        return {rule.id: rule for rule in self.rules}
