"""Fuzzing: harnesses in fuzz/targets/, the runner in fuzz/run.py (see fuzz/README.md).

A plain folder of the repository, not part of the installed fieldgate package.
"""
