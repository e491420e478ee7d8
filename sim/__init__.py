"""The virtual field: everything outside the gateway that `make demo`, the tests and the benchmarks run it against.

* ``sim.modbus``: Modbus field devices (``SimUnit``) behind a real pymodbus server (``SimServer``);
  ``python -m sim.modbus CONFIG --animate`` serves a site config's TCP devices (the demo's reservoir).
* ``sim.rs485``: a multi-drop RS-485 line in software (``LineSimulator``) and a ``NoiseRelay`` that damages frames.
* ``sim.relay_board``: a Modbus TCP relay board with stuck relays and a slow mode (``SimRelayBoard``).
* ``sim.beidou``, ``sim.iridium``: the satellite modem emulators, each on one end of a pty pair
  (``sim.serial_pty``: the emulator thread and ``socat_pair``).
* ``sim.broker``: mosquitto on a free loopback port; ``sim.platform``: the county platform's MQTT client
  (collects envelopes, publishes signed commands, keeps a persistent session).
* ``sim.gateway_process``: ``fieldgate run`` as a child process; ``sim.sites``: site configs for these devices.
* ``sim.smallfs``: a small loop-mounted ext4 to fill up (disk full); ``sim.faketime``: one child's wall clock
  stepped under libfaketime (clock steps). Both for the full-disk test and the chaos soak (bench/soak.py).
* ``sim.demo``: ``make demo``, the reservoir site against ``python -m sim.modbus`` and a local mosquitto.

It ships in the wheel because ``make demo`` (sim/demo.py) runs from it. The daemon never imports it: gateway/
and drivers/ runtime code must not depend on simulated parts; tests/unit/test_sim_boundary.py checks this.
"""
