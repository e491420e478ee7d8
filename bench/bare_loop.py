"""The baseline of bench/ingest.py: the least a Python gateway can do for the same workload.

Block reads with pymodbus (one ``read_holding_registers`` of every device's registers per poll),
report-by-exception on a plain dict, one JSON message per device and poll to the broker with paho
(QoS 1, its own network thread). No config, no rules, no journal, no durability: what a hand-written
loop costs, so that the gateway's figures can be given as a ratio against it measured in the same run.

    python bench/bare_loop.py --broker-port 1883 --ports 5020,5021 --registers 20 --poll-ms 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient


async def poll_device(index: int, port: int, registers: int, poll_s: float, mqtt: paho.Client, topic: str) -> None:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    await client.connect()
    names = [f"d{index}.r{r}" for r in range(registers)]
    last: list[int | None] = [None] * registers
    next_poll = time.monotonic()
    while True:
        reply = await client.read_holding_registers(0, count=registers, device_id=1)
        now = time.time()
        if not reply.isError():
            changed = [{"point": names[i], "value": v, "q": "good", "ts": round(now, 3)}
                       for i, v in enumerate(reply.registers) if v != last[i]]
            last = list(reply.registers)
            if changed:
                mqtt.publish(topic, json.dumps({"v": 1, "gw": "bare", "records": changed},
                                               separators=(",", ":")), qos=1)
        next_poll += poll_s
        await asyncio.sleep(max(0.0, next_poll - time.monotonic()))


async def main_async(args: argparse.Namespace) -> None:
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id="bare-loop", protocol=paho.MQTTv5)
    mqtt.max_inflight_messages_set(16)
    mqtt.connect("127.0.0.1", args.broker_port)
    mqtt.loop_start()
    ports = [int(p) for p in args.ports.split(",")]
    async with asyncio.TaskGroup() as tg:
        for i, port in enumerate(ports):
            tg.create_task(poll_device(i, port, args.registers, args.poll_ms / 1000, mqtt,
                                       "fieldgate/v1/bare/telemetry"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--ports", required=True, help="comma-separated Modbus TCP ports, one device each")
    parser.add_argument("--registers", type=int, default=20)
    parser.add_argument("--poll-ms", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
