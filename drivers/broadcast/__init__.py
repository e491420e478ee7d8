"""Broadcast outputs: siren relay, ALSA audio with TTS, RTP multicast G.711, HTTP trigger.

Importing this package is cheap: hardware libraries (pymodbus) load only in the modules that
drive hardware (relay.py, siren.py, audio.py), which `factory.build_outputs` imports.
"""
