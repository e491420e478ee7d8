"""One async byte-stream layer for every driver on a serial port or a TCP socket (README.md here).

Nothing is imported here: a config that only names RS-485 options (``drivers.ports.settings``)
must not load pyserial.
"""
