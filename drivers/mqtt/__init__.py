"""MQTT 5 uplink driver (aiomqtt 2 on paho-mqtt 2)."""
