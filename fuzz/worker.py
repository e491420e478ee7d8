"""One harness in its own process: fuzz it (atheris or the seeded mutator), replay inputs, measure coverage.

Started by fuzz/run.py, one process per target, so a crash, a hang or a memory blow-up ends
that target's run only and the parent can tell which input did it.

Mutator hangs: before each input the worker copies it into a shared ``heartbeat`` file
(an 8-byte counter, an 8-byte length, the bytes). The parent kills a worker whose counter has
not moved for the per-input time limit and keeps the input as ``timeout-<sha1>``; this catches
hangs inside C code (a regex, int()) that a Python signal handler would wait out.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import mmap
import resource
import struct
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from fuzz.mutator import Mutator

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO / "fuzz" / "targets"
REGRESSIONS = REPO / "fuzz" / "regressions"
DEFAULT_MAX_LEN = 8192
HEARTBEAT_HEAD = struct.Struct("<QQ")  # inputs started, length of the current one
MAX_DISTINCT_CRASHES = 10  # the mutator goes on after a crash to find the others, up to this many
INSTRUMENTED = ["gateway", "drivers"]  # what atheris instruments and coverage measures


@dataclass(frozen=True)
class Target:
    name: str
    path: Path
    module: ModuleType

    @property
    def fuzz_one(self) -> Callable[[bytes], None]:
        fn: Callable[[bytes], None] = self.module.fuzz_one
        return fn

    @property
    def max_len(self) -> int:
        return int(getattr(self.module, "MAX_LEN", DEFAULT_MAX_LEN))

    @property
    def covers(self) -> tuple[str, ...]:
        """Source files (repository-relative) the coverage figure is about; () = every file the run touched."""
        return tuple(getattr(self.module, "COVERS", ()))

    def seeds(self) -> list[bytes]:
        """The harness's seeds, then every input kept in fuzz/regressions/<name>/ (crashes fixed before)."""
        out = [bytes(s) for s in self.module.seeds()]
        folder = REGRESSIONS / self.name
        if folder.is_dir():
            out += [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
        return out


def target_paths(folder: Path = TARGETS) -> list[Path]:
    """Every harness: fuzz/targets/*.py except private helpers (``_*.py``)."""
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


def load_target(path: Path) -> Target:
    spec = importlib.util.spec_from_file_location(f"fuzz_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for attr in ("NAME", "seeds", "fuzz_one"):
        if not hasattr(module, attr):
            raise ImportError(f"{path}: a harness defines NAME, seeds() and fuzz_one(data) (fuzz/README.md)")
    return Target(str(module.NAME), path, module)


def mutator_seed(seed: int, name: str) -> int:
    return seed * 1_000_003 + zlib.crc32(name.encode())


def artifact_name(kind: str, data: bytes) -> str:
    return f"{kind}-{hashlib.sha1(data).hexdigest()}"


# --------------------------------------------------------------------------- mutator engine


class Heartbeat:
    def __init__(self, path: Path, max_len: int) -> None:
        size = HEARTBEAT_HEAD.size + max_len
        with path.open("wb") as f:
            f.truncate(size)
        self._file = path.open("r+b")
        self._map = mmap.mmap(self._file.fileno(), size)
        self.count = 0

    def beat(self, data: bytes) -> None:
        self.count += 1
        self._map[HEARTBEAT_HEAD.size : HEARTBEAT_HEAD.size + len(data)] = data
        HEARTBEAT_HEAD.pack_into(self._map, 0, self.count, len(data))


def read_heartbeat(path: Path) -> tuple[int, bytes]:
    """(inputs started, the current input) as a worker last wrote them."""
    raw = path.read_bytes()
    if len(raw) < HEARTBEAT_HEAD.size:
        return 0, b""
    count, length = HEARTBEAT_HEAD.unpack_from(raw)
    return count, raw[HEARTBEAT_HEAD.size : HEARTBEAT_HEAD.size + length]


def _crash_key(exc: BaseException) -> str:
    """Exception type and the innermost repository frame: one entry per distinct bug, not per input."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(str(REPO)) and "/fuzz/" not in frame.filename:
            where = f"{Path(frame.filename).relative_to(REPO)}:{frame.lineno}"
    return f"{type(exc).__name__} at {where or '?'}"


def _limit_memory(mb: int) -> None:
    if mb > 0:
        limit = mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def run_mutator(target: Target, args: argparse.Namespace) -> int:
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    heartbeat = Heartbeat(Path(args.heartbeat), target.max_len)
    mutator = Mutator(target.seeds(), seed=mutator_seed(args.seed, target.name), max_len=target.max_len,
                      tokens=getattr(target.module, "DICTIONARY", ()))
    fuzz_one = target.fuzz_one
    _limit_memory(args.rss_limit_mb)
    crashes: dict[str, str] = {}
    started = time.monotonic()
    deadline = started + args.seconds if args.seconds else float("inf")
    next_status = started + 10
    runs = 0
    for data in _bounded(mutator.inputs(), args.runs):
        heartbeat.beat(data)
        try:
            fuzz_one(data)
        except KeyboardInterrupt:
            break
        except BaseException as exc:  # anything the harness let through is a finding, SystemExit included
            key = _crash_key(exc)
            if key not in crashes:
                name = artifact_name("crash", data)
                (artifacts / name).write_bytes(data)
                (artifacts / f"{name}.txt").write_text("".join(traceback.format_exception(exc)))
                crashes[key] = name
                print(f"CRASH {key}: {artifacts / name}", file=sys.stderr, flush=True)
                if len(crashes) >= MAX_DISTINCT_CRASHES:
                    runs += 1
                    break
        runs += 1
        if runs & 0xFF == 0:
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_status:
                next_status = now + 10
                print(f"#{runs} exec/s: {runs / (now - started):.0f} crashes: {len(crashes)}", file=sys.stderr,
                      flush=True)
    seconds = time.monotonic() - started
    summary = {"runs": runs, "seconds": round(seconds, 3), "crashes": sorted(crashes.values()),
               "seeds": len(mutator.seeds), "max_len": target.max_len}
    Path(args.summary).write_text(json.dumps(summary))
    return 1 if crashes else 0


def _bounded(inputs: Iterator[bytes], runs: int) -> Iterator[bytes]:
    for i, data in enumerate(inputs):
        if runs and i >= runs:
            return
        yield data


# --------------------------------------------------------------------------- atheris engine


def run_atheris(path: Path, args: argparse.Namespace) -> None:
    import atheris  # type: ignore[import-not-found]  # optional: pip install '.[fuzz]'

    with atheris.instrument_imports(include=INSTRUMENTED):
        target = load_target(path)
    corpus, seed_dir = Path(args.corpus), Path(args.seed_dir)
    for folder in (corpus, seed_dir, Path(args.artifacts)):
        folder.mkdir(parents=True, exist_ok=True)
    for old in seed_dir.iterdir():
        old.unlink()
    for data in target.seeds():
        (seed_dir / artifact_name("seed", data)).write_bytes(data[: target.max_len])
    argv = [sys.argv[0], f"-runs={args.runs or -1}", f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}",
            f"-max_len={target.max_len}", f"-seed={args.seed or 0}", f"-artifact_prefix={args.artifacts}/",
            "-print_final_stats=1", str(corpus), str(seed_dir)]
    if args.seconds:
        argv.insert(2, f"-max_total_time={int(args.seconds)}")
    dictionary = getattr(target.module, "DICTIONARY", ())
    if dictionary:
        dict_file = Path(args.artifacts) / "dictionary.txt"
        dict_file.write_text("".join(f'"{_escaped(token)}"\n' for token in dictionary))
        argv.insert(2, f"-dict={dict_file}")
    atheris.Setup(argv, target.fuzz_one)
    atheris.Fuzz()  # exits the process


def _escaped(token: bytes) -> str:
    """A libFuzzer dictionary entry: every byte as \\xHH."""
    return "".join(f"\\x{b:02x}" for b in token)


# --------------------------------------------------------------------------- replay, coverage


def replay(target: Target, inputs: Sequence[bytes] | Iterator[bytes]) -> int:
    """Run ``inputs`` through the harness, ignoring findings (they are the fuzz run's to report)."""
    n = 0
    for data in inputs:
        n += 1
        with contextlib.suppress(Exception):  # coverage only: the fuzz run reported any finding
            target.fuzz_one(data)
    return n


def measure_coverage(path: Path, args: argparse.Namespace) -> None:
    """Line coverage of the parser modules by the fuzz run's inputs, as JSON in ``args.summary``.

    atheris: every input of its corpus (what it found interesting) plus the seeds. Mutator: it
    keeps no corpus, so the first ``args.runs`` inputs of the same seeded sequence are replayed.
    """
    import coverage  # optional: pip install '.[fuzz]'

    cov = coverage.Coverage(data_file=None, include=[str(REPO / p / "*") for p in INSTRUMENTED])
    cov.start()
    target = load_target(path)
    if args.engine == "atheris":
        files = [p for d in (Path(args.corpus), Path(args.seed_dir)) if d.is_dir() for p in sorted(d.iterdir())]
        count = replay(target, (p.read_bytes() for p in files))
    else:
        mutator = Mutator(target.seeds(), seed=mutator_seed(args.seed, target.name), max_len=target.max_len,
                          tokens=getattr(target.module, "DICTIONARY", ()))
        count = replay(target, _bounded(mutator.inputs(), args.runs))
    cov.stop()
    measured = [Path(f) for f in cov.get_data().measured_files()]
    wanted = [REPO / c for c in target.covers] or measured
    statements = missing = 0
    for file in wanted:
        _, stmts, _, miss, _ = cov.analysis2(str(file))
        statements += len(stmts)
        missing += len(miss)
    result = {"inputs": count, "statements": statements, "covered": statements - missing,
              "named": bool(target.covers), "files": [str(f.relative_to(REPO)) for f in wanted]}
    Path(args.summary).write_text(json.dumps(result))


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fuzz/run.py's worker: one target in one process")
    parser.add_argument("mode", choices=["fuzz", "cover", "reproduce"])
    parser.add_argument("target", type=Path)
    parser.add_argument("--engine", choices=["atheris", "mutator"], default="mutator")
    parser.add_argument("--runs", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--artifacts", default="")
    parser.add_argument("--corpus", default="")
    parser.add_argument("--seed-dir", default="")
    parser.add_argument("--heartbeat", default="")
    parser.add_argument("--summary", default="")
    parser.add_argument("inputs", nargs="*", type=Path, help="reproduce: files to run through the harness")
    args = parser.parse_args(argv)
    if args.mode == "reproduce":
        target = load_target(args.target)
        for file in args.inputs:
            print(f"{target.name}: {file}", file=sys.stderr)
            target.fuzz_one(file.read_bytes())  # a finding raises here, with its traceback
        return 0
    if args.mode == "cover":
        measure_coverage(args.target, args)
        return 0
    if args.engine == "atheris":
        run_atheris(args.target, args)
        return 0
    return run_mutator(load_target(args.target), args)


if __name__ == "__main__":
    sys.exit(main())
