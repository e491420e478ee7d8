"""`fieldgate sat-centre`: the county centre's end of the satellite path (docs/satellite.md §7).

The centre's BeiDou command receiver (指挥机) on a serial port receives every subordinate gateway
card's messages; this bridge maps each card to its gateway, decodes the compact message with that
gateway's aliases, publishes it to MQTT in the fieldgate envelope (same topics, same seqs, plus
``"via": "beidou"``), and once the broker has it sends the gateway its authenticated compact ACK.

Never imported by the gateway daemon: ``gateway/cli.py`` imports only ``centre.cli`` to add the
sub-command, and that imports the rest when the command runs.
"""
