"""Alerts: CAP-shaped model, interlock, two-person signing, audit log, broadcast dispatcher."""
