"""The fuzz runner (fuzz/run.py, fuzz/worker.py, fuzz/mutator.py) and every harness's seeds.

Each harness's seeds, regression inputs included (fuzz/regressions/<target>/: crashes found
before, fixed at the cause), go through its ``fuzz_one`` here on every test run. The runner is
checked on toy harnesses in tests/hil/test_fuzz.py (it starts worker processes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_private_helpers_are_not_targets(tmp_path: Path) -> None:
    (tmp_path / "real.py").write_text('NAME = "real"\n\n\ndef fuzz_one(data):\n    pass\n')
    (tmp_path / "_helper.py").write_text("")
    assert [p.stem for p in target_paths(tmp_path)] == ["real"]
