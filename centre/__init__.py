"""The county centre's programs: what runs beside the platform, not on the box.

* ``centre.satellite`` — ``fieldgate sat-centre``: the BeiDou command receiver → MQTT, ACKs back
  (docs/satellite.md §7);
* ``centre.sl651`` — ``fieldgate sl651-centre``: SL 651 stations over TCP → MQTT (docs/sl651.md).

They reuse the drivers (BeiDou link, MQTT client, SL 651 codec) and the core's config loader, which is
why they live here and not in ``gateway/`` (the daemon's core names drivers only in its registry) or
``drivers/`` (drivers import only the core's contracts). The daemon never imports this package;
``gateway/cli.py`` adds its subcommands, whose modules load only when their command runs.
"""
