"""The county's MQTT broker: a real mosquitto on a free loopback port, with persistence, so it can be stopped
and restarted mid-test (an uplink outage) without losing the platform's persistent session."""

from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
from pathlib import Path

from sim.support import free_port, listening, wait_for


def mosquitto_binary(name: str = "mosquitto") -> str:
    found = shutil.which(name) or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
    return found


class Broker:
    """A real mosquitto on loopback, with persistence so it can be stopped and restarted mid-test."""

    def __init__(self, workdir: Path, binary: str = "mosquitto", port: int | None = None,
                 extra_conf: str = "") -> None:
        self.binary = mosquitto_binary(binary)
        self.port = port or free_port()
        self.workdir = workdir
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Broker:
        conf = self.workdir / "mosquitto.conf"
        # Started as root, mosquitto drops to user "mosquitto", which cannot write our temp dir, and its
        # persistence then silently fails: keep it as whoever runs the tests.
        conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n{self.extra_conf}"
        )
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        wait_for(lambda: listening(self.port), 10, f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence file on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
