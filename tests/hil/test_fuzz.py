"""The fuzz runner on toy harnesses: it must report a crash and a hang with the input that caused it.

Here rather than in tests/unit: the runner starts a worker process per target.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import run

pytestmark = pytest.mark.hil


def toy(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(f'NAME = "{name}"\n\n\ndef seeds():\n    return [b"abc", b"xyz"]\n\n\n{body}')
    return path


def fuzz(folder: Path, work: Path, *extra: str) -> int:
    return run.main(["--targets", str(folder), "--work", str(work), "--engine", "mutator", "--runs", "3000", *extra])


def test_a_crash_is_reported_with_the_input_that_caused_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets"
    toy(targets, "crashy", "def fuzz_one(data):\n    if data.count(b'b') > 1:\n        raise KeyError(data)\n")
    toy(targets, "calm", "def fuzz_one(data):\n    pass\n")
    assert fuzz(targets, tmp_path / "work") == 1
    found = sorted((tmp_path / "work" / "artifacts" / "crashy").glob("crash-*"))
    data = [p for p in found if p.suffix != ".txt"]
    assert len(data) == 1 and data[0].read_bytes().count(b"b") > 1
    assert "KeyError" in data[0].with_name(data[0].name + ".txt").read_text()
    assert list((tmp_path / "work" / "artifacts" / "calm").iterdir()) == []
    out = capsys.readouterr()
    assert "| crashy | mutator | 3 000 |" in out.out and "| calm | mutator | 3 000 |" in out.out
    assert f"--reproduce crashy {data[0]}" in out.err
    assert run.main(["--targets", str(targets), "--reproduce", "crashy", str(data[0])]) != 0
    assert run.main(["--targets", str(targets), "--reproduce", "calm", str(data[0])]) == 0
    capsys.readouterr()
    assert fuzz(targets, tmp_path / "work", "--only", "crashy") == 1
    assert f"FINDING crashy: {data[0]}" in capsys.readouterr().err  # found again: reported again


def test_an_input_that_hangs_is_killed_and_kept(tmp_path: Path) -> None:
    """The hang is in C code (a regex that backtracks for ages), where a Python alarm cannot interrupt it."""
    targets = tmp_path / "targets"
    toy(targets, "stuck", "import re\n\n\ndef fuzz_one(data):\n    if data == b'xyz':\n"
                          "        re.match(rb'(a+)+$', b'a' * 64 + b'b')\n")
    assert fuzz(targets, tmp_path / "work", "--timeout", "1") == 1
    kept = list((tmp_path / "work" / "artifacts" / "stuck").glob("timeout-*"))
    assert [p.read_bytes() for p in kept] == [b"xyz"]


def test_a_broken_harness_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "broken.py").write_text('NAME = "broken"\n')
    assert fuzz(targets, tmp_path / "work") == 1
    assert "worker exited" in capsys.readouterr().err
