"""The adversarial suite runs on the same real broker and platform subscriber as the rig tests."""

from tests.hil.conftest import broker, collector, rig

__all__ = ["broker", "collector", "rig"]
