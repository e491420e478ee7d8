"""Modem emulators for the virtual rig: each serves one end of a socat pty pair.

`python -m tests.hil.emulators.beidou PTY` / `python -m tests.hil.emulators.iridium PTY`,
or import and ``start()``/``stop()`` them (a thread) from a test. See docs/satellite.md.
"""
