"""The fuzz runner (fuzz/run.py, fuzz/worker.py, fuzz/mutator.py) and every harness's seeds.

Each harness's seeds, regression inputs included (fuzz/regressions/<target>/: crashes found
before, fixed at the cause), go through its ``fuzz_one`` here on every test run. The runner is
checked on toy harnesses: it must report a crash and a hang with the input that caused it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import run
from fuzz.mutator import Mutator
from fuzz.worker import TARGETS, load_target, target_paths

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("path", target_paths(), ids=lambda p: p.stem)
def test_every_seed_and_regression_input_passes_its_harness(path: Path) -> None:
    target = load_target(path)
    assert target.name == path.stem  # fuzz/README.md: NAME is the file name
    seeds = target.seeds()
    assert seeds, "a harness needs seeds (built-in ones when ../shared/vectors is absent)"
    for data in seeds:
        target.fuzz_one(data)


def test_the_parsers_named_in_the_brief_have_harnesses() -> None:
    names = {p.stem for p in target_paths()}
    assert {"modbus_reply", "modbus_master", "serialline", "beidou_text", "beidou_binary", "beidou_stream",
            "iridium_at", "iridium_sbdrb", "compact", "command_json", "command_compact"} <= names
    assert all(p.parent == TARGETS for p in target_paths())


def test_mutator_is_deterministic_and_bounded() -> None:
    seeds = [b"$BDFKI,TXA,Y,Y,0,0040*17\r\n", b"\x00\x05hello\x02\x14"]

    def first(seed: int) -> list[bytes]:
        inputs = Mutator(seeds, seed=seed, max_len=300).inputs()
        return [next(inputs) for _ in range(2000)]

    a = first(7)
    assert a == first(7) and a != first(8)
    assert a[:2] == seeds  # every seed once, as is, first
    assert all(len(x) <= 300 for x in a)
    assert any(len(x) == 300 for x in a)  # runs grown to the limit
    grown = Mutator(seeds, seed=1, max_len=5000).inputs()
    assert any(b"9" * 4301 in next(grown) for _ in range(5000))  # a number past int()'s digit limit


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


def test_private_helpers_are_not_targets(tmp_path: Path) -> None:
    toy(tmp_path, "real", "def fuzz_one(data):\n    pass\n")
    (tmp_path / "_helper.py").write_text("")
    assert [p.stem for p in target_paths(tmp_path)] == ["real"]
