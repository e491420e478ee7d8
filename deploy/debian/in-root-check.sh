# shellcheck shell=sh
# Run inside a fresh Bookworm root by check-in-root.sh, as `sh -s` on its standard input (so nothing but
# the .deb is copied into the root), in a network namespace that has only a loopback interface.
# Prints "CHECK <what>: ok" per check and "FIGURE <name>=<value>" per measurement; exits non-zero at the
# first failure. DEMO_SECONDS (default 60) is how long the demo site runs.
set -eu
DEMO_SECONDS=${DEMO_SECONDS:-60}
PY=/opt/fieldgate/venv/bin/python3
export LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin

now() { date +%s.%N; }
check() { echo "CHECK $*: ok"; }
figure() { echo "FIGURE $1=$2"; }
calc() { $PY -c "print(round($1, 2))"; }
# Wait up to 120 s (emulated Python starts slowly) until something listens on 127.0.0.1:PORT.
wait_listen() {
    hex=$(printf '%04X' "$1")
    for _ in $(seq 600); do
        grep -q "0100007F:$hex 00000000:0000 0A" /proc/net/tcp && return 0
        sleep 0.2
    done
    echo "nothing listens on port $1" >&2
    exit 1
}

echo "== network inside the root: $(awk -F: 'NR > 2 {gsub(/ /, "", $1); printf "%s ", $1}' /proc/net/dev)"
[ "$(awk 'NR > 2' /proc/net/dev | wc -l)" = 1 ] || { echo "more than loopback here" >&2; exit 1; }
check "no network but loopback"

echo "== dpkg -i (dependencies from the base only)"
deb=$(ls /tmp/fieldgate_*.deb)
t=$(now)
dpkg -i "$deb"
figure install_seconds "$(calc "$(now) - $t")"
dpkg-query -W -f='${Status} ${Version}\n' fieldgate | grep -q '^install ok installed'
check "dpkg -i $(basename "$deb")"
id fieldgate | grep -q dialout && getent group fieldgate-operators >/dev/null
check "user fieldgate (dialout, audio) and group fieldgate-operators"
[ -L /etc/systemd/system/multi-user.target.wants/fieldgate.service ]
check "unit enabled"
[ "$(stat -c %U:%G:%a /var/lib/fieldgate)" = fieldgate:fieldgate:750 ]
[ "$(stat -c %U:%G:%a /etc/fieldgate/credentials)" = root:root:700 ]
check "ownership of /etc/fieldgate and /var/lib/fieldgate"

echo "== fieldgate validate on every example site"
for site in /etc/fieldgate/site.example.yaml /usr/share/doc/fieldgate/examples/*.yaml; do
    fieldgate validate "$site"
done
check "validate every example site"

echo "== systemd-analyze verify"
out=$(systemd-analyze verify /lib/systemd/system/fieldgate.service 2>&1) || { echo "$out"; exit 1; }
[ -z "$out" ] || { echo "$out"; exit 1; }
check "systemd-analyze verify fieldgate.service"

echo "== the baseline ONNX model, once on a frame"
$PY - <<'PY'
import time

t0 = time.perf_counter()
import numpy as np

from drivers.onnx.backend import OnnxBackend
from gateway.vision.detector import Detector
from gateway.vision.manifest import load_manifest

t1 = time.perf_counter()
loaded = load_manifest("/opt/fieldgate/models/baseline-fire-smoke.yaml")
detector = Detector(loaded, OnnxBackend(loaded.model_path, threads=2))
t2 = time.perf_counter()
frame = np.full((480, 640, 3), 60, np.uint8)
frame[180:300, 260:380] = (40, 160, 250)  # BGR: a bright orange patch the baseline calls fire
found = detector.detect(frame)
t3 = time.perf_counter()
roles = sorted({detector.roles[int(c)] for c in found.class_ids})
print(f"detections: {len(found)} {roles}")
assert "fire" in roles, roles
print(f"FIGURE onnx_import_seconds={t1 - t0:.2f}")
print(f"FIGURE onnx_load_seconds={t2 - t1:.2f}")
print(f"FIGURE onnx_first_inference_seconds={t3 - t2:.3f}")
PY
check "baseline model loaded and run on a frame"

echo "== the demo site for ${DEMO_SECONDS}s: simulator, mosquitto, the daemon as the unit runs it"
cp /etc/fieldgate/site.example.yaml /etc/fieldgate/site.yaml
printf 'listener 18830 127.0.0.1\nallow_anonymous true\npersistence false\n' >/tmp/mosquitto.conf
mosquitto -c /tmp/mosquitto.conf >/tmp/mosquitto.log 2>&1 &
wait_listen 18830
$PY -m sim.modbus /etc/fieldgate/site.yaml --animate >/tmp/sim.log 2>&1 &
$PY - >/tmp/subscriber.log 2>/tmp/subscriber.err <<'PY' &
import json, pathlib, time
import paho.mqtt.client as mqtt

def on_connect(client, userdata, flags, reason, properties):
    client.subscribe("#", qos=1)

def on_subscribe(client, userdata, mid, reasons, properties):
    pathlib.Path("/tmp/subscribed").touch()

def on_message(client, userdata, message):
    if message.topic.endswith("/telemetry"):
        for record in json.loads(message.payload).get("records", []):
            print(f"{time.time():.3f} {record.get('point')} {record.get('value')}", flush=True)

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
client.connect("127.0.0.1", 18830)
client.loop_forever()
PY
wait_listen 15020
for _ in $(seq 600); do [ -e /tmp/subscribed ] && break; sleep 0.2; done
[ -e /tmp/subscribed ] || { cat /tmp/subscriber.err; echo "the subscriber did not subscribe" >&2; exit 1; }
exec_start=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/fieldgate.service)
env_words=$(sed -n 's/^Environment=//p' /lib/systemd/system/fieldgate.service)
t_start=$(now)
# shellcheck disable=SC2086
setpriv --reuid=fieldgate --regid=fieldgate --init-groups env $env_words $exec_start >/tmp/gateway.log 2>&1 &
gateway=$!
first=""
end=$(($(date +%s) + DEMO_SECONDS))
while [ "$(date +%s)" -lt "$end" ]; do
    if [ -z "$first" ] && [ -s /tmp/subscriber.log ]; then
        first=$(head -n 1 /tmp/subscriber.log | cut -d' ' -f1)
    fi
    kill -0 "$gateway" 2>/dev/null || { cat /tmp/gateway.log; echo "the gateway stopped" >&2; exit 1; }
    sleep 1
done
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$gateway/status")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$gateway/status")
kill -TERM "$gateway"
rc=0
wait "$gateway" || rc=$?
tail -n 5 /tmp/gateway.log
[ "$rc" = 0 ] || { echo "the gateway exited with $rc" >&2; exit 1; }
readings=$(wc -l </tmp/subscriber.log)
if [ -z "$first" ] || [ "$readings" -lt 10 ]; then
    cat /tmp/gateway.log
    echo "too few readings at the broker: $readings" >&2
    exit 1
fi
head -n 3 /tmp/subscriber.log
figure first_reading_seconds "$(calc "$first - $t_start")"
figure readings_at_broker "$readings"
figure gateway_rss_mib "$(calc "$rss / 1024")"
figure gateway_peak_rss_mib "$(calc "$hwm / 1024")"
[ -s /var/lib/fieldgate/journal.sqlite ]
check "demo site ${DEMO_SECONDS}s, readings at the broker, clean stop (exit 0)"
