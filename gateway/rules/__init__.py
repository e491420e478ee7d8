"""Local alarm rules: config models, the pure rule engine, and the replay checker."""

from gateway.rules.config import RulesConfig
from gateway.rules.engine import AlarmClass, AlarmTransition, RuleEngine, TransitionKind

__all__ = ["AlarmClass", "AlarmTransition", "RuleEngine", "RulesConfig", "TransitionKind"]
