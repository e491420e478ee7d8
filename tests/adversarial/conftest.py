"""The adversarial tests run on the same rig as the HIL tests (broker, collector fixtures)."""

from tests.hil.conftest import broker, collector, rig

__all__ = ["broker", "collector", "rig"]
