"""Run every fuzz harness in fuzz/targets/ (fuzz/README.md), each in its own process, and report.

    python -m fuzz.run                          # every target, 1 000 000 executions each (make fuzz)
    python -m fuzz.run --engine mutator --runs 50000 --seconds 10 --jobs 2  # the CI smoke (make fuzz-smoke)
    python -m fuzz.run --only beidou_text,iridium_at --seconds 60
    python -m fuzz.run --list
    python -m fuzz.run --reproduce beidou_text .fuzz/artifacts/beidou_text/crash-<sha1>

Engines: atheris (coverage-guided libFuzzer, ``pip install '.[fuzz]'``) when installed, else
the seeded mutator (fuzz/mutator.py). A finding is anything a harness lets escape besides its
parser's documented errors (``crash-*``), an input running past ``--timeout`` seconds
(``timeout-*``) or past the memory limit (``oom-*``); each is kept under
``<work>/artifacts/<target>/`` and the run exits 1. Figures print as a Markdown table for
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.worker import REPO, TARGETS, artifact_name, read_heartbeat, target_paths

STARTUP_GRACE_S = 60.0  # imports and seed loading before the first input
COVERAGE_SAMPLE = 20_000  # mutator inputs replayed under coverage (it keeps no corpus)
FINDING_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")


@dataclass
class Result:
    target: str
    engine: str
    runs: int = 0
    seconds: float = 0.0
    findings: list[Path] = field(default_factory=list)
    edges: int | None = None  # atheris: instrumented edges reached (libFuzzer "cov:")
    features: int | None = None  # atheris: libFuzzer "ft:"
    corpus: int | None = None  # atheris: inputs kept
    covered: tuple[int, int] | None = None  # (statements run, statements) in the target's parser modules
    covers_all: bool = False  # the harness names no COVERS: the figure is over every file the run touched
    error: str = ""  # the worker failed without a finding (broken harness)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.error

    def row(self) -> str:
        rate = f"{self.runs / self.seconds:,.0f}" if self.seconds else "-"
        cov = "-"
        if self.covered and self.covered[1]:
            cov = f"{self.covered[0]}/{self.covered[1]} lines ({100 * self.covered[0] / self.covered[1]:.0f} %)"
            cov += " of every file run" if self.covers_all else ""
        guided = "-" if self.edges is None else f"{self.edges} / {self.features}"
        crashes = sum(1 for f in self.findings if not f.name.startswith("timeout-"))
        hangs = len(self.findings) - crashes
        return (f"| {self.target} | {self.engine} | {self.runs:,} | {self.seconds:.0f} | {rate} | {crashes} | {hangs} "
                f"| {guided} | {'-' if self.corpus is None else self.corpus} | {cov} |").replace(",", " ")


HEADER = ("| target | engine | executions | s | exec/s | crashes | timeouts | edges / features | corpus "
          "| line coverage of the parser modules |\n|---|---|---|---|---|---|---|---|---|---|")


def atheris_installed() -> bool:
    return importlib.util.find_spec("atheris") is not None


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work).resolve()
        self.engine = args.engine if args.engine != "auto" else ("atheris" if atheris_installed() else "mutator")

    def dirs(self, name: str) -> dict[str, Path]:
        return {k: self.work / k / name for k in ("artifacts", "corpus", "seeds", "tmp")}

    def worker(self, mode: str, path: Path, runs: int, summary: Path) -> list[str]:
        d = self.dirs(path.stem)
        a = self.args
        return [sys.executable, "-m", "fuzz.worker", mode, str(path), "--engine", self.engine, "--runs", str(runs),
                "--seconds", str(a.seconds), "--seed", str(a.seed), "--timeout", str(a.timeout),
                "--rss-limit-mb", str(a.rss_limit_mb), "--artifacts", str(d["artifacts"]), "--corpus", str(d["corpus"]),
                "--seed-dir", str(d["seeds"]), "--heartbeat", str(d["tmp"] / "heartbeat"), "--summary", str(summary)]

    def run(self, path: Path) -> Result:
        name = path.stem
        d = self.dirs(name)
        for folder in d.values():
            folder.mkdir(parents=True, exist_ok=True)
        summary, log_path = d["tmp"] / "summary.json", d["tmp"] / "log.txt"
        summary.unlink(missing_ok=True)
        (d["tmp"] / "heartbeat").unlink(missing_ok=True)
        since = time.time() - 1  # findings are the artifacts (re)written by this run, old names included
        result = Result(name, self.engine)
        started = time.monotonic()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(self.worker("fuzz", path, self.args.runs, summary), cwd=REPO, env=_env(),
                                    stdout=log, stderr=subprocess.STDOUT)
            hang = self._watch(proc, d["tmp"] / "heartbeat")
        if hang is not None:
            artifact = d["artifacts"] / artifact_name("timeout", hang)
            artifact.write_bytes(hang)
        result.seconds = time.monotonic() - started
        log_text = log_path.read_text(errors="replace")
        if self.engine == "atheris":
            _parse_libfuzzer(log_text, result)
        elif summary.exists():
            data = json.loads(summary.read_text())
            result.runs, result.seconds = data["runs"], data["seconds"]
        result.findings = sorted(p for p in d["artifacts"].iterdir() if p.name.startswith(FINDING_PREFIXES)
                                 and p.suffix != ".txt" and p.stat().st_mtime >= since)
        if proc.returncode not in (0, None) and not result.findings and hang is None:
            result.error = f"worker exited {proc.returncode}: " + " | ".join(log_text.strip().splitlines()[-5:])
        if self.args.coverage and result.ok:
            self._coverage(path, result)
        return result

    def _watch(self, proc: subprocess.Popen[bytes], heartbeat: Path) -> bytes | None:
        """Wait for the worker; kill a mutator worker stuck on one input and return that input."""
        last_count, last_change = -1, time.monotonic()
        limit = STARTUP_GRACE_S
        while proc.poll() is None:
            time.sleep(0.2)
            if self.engine != "mutator" or not heartbeat.exists():
                continue
            count, current = read_heartbeat(heartbeat)
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
                if count:
                    limit = self.args.timeout
            elif now - last_change > limit:
                proc.kill()
                proc.wait()
                print(f"TIMEOUT: one input ran more than {limit:.0f} s", file=sys.stderr)
                return current
        return None

    def _coverage(self, path: Path, result: Result) -> None:
        if importlib.util.find_spec("coverage") is None:
            return
        out = self.dirs(path.stem)["tmp"] / "coverage.json"
        out.unlink(missing_ok=True)
        runs = min(self.args.runs or COVERAGE_SAMPLE, COVERAGE_SAMPLE)
        subprocess.run(self.worker("cover", path, runs, out), cwd=REPO, env=_env(), check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if out.exists():
            data = json.loads(out.read_text())
            result.covered, result.covers_all = (data["covered"], data["statements"]), not data["named"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_STATUS = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")
_PROGRESS = re.compile(r"^#(\d+)\s", re.M)


def _parse_libfuzzer(log: str, result: Result) -> None:
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    progress = _PROGRESS.findall(log)  # a run that ended on a finding may print no final stats
    result.runs = stats.get("number_of_executed_units", int(progress[-1]) if progress else 0)
    status = _STATUS.findall(log)
    if status:
        edges, features, corpus = status[-1]
        result.edges, result.features, result.corpus = int(edges), int(features), int(corpus)


def reproduce(name: str, files: list[Path], targets: Path) -> int:
    """Run saved inputs through a harness in this process, so a finding shows its traceback."""
    path = targets / f"{name}.py"
    cmd = [sys.executable, "-m", "fuzz.worker", "reproduce", str(path), *map(str, files)]
    return subprocess.run(cmd, cwd=REPO, env=_env(), check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions per target (0 = no limit)")
    parser.add_argument("--seconds", type=float, default=0, help="wall-clock cap per target (0 = none)")
    parser.add_argument("--engine", choices=["auto", "atheris", "mutator"], default="auto")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--seed", type=int, default=0, help="mutator: sequence seed; atheris: 0 = random")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--coverage", action="store_true", help="measure line coverage (needs coverage.py)")
    parser.add_argument("--work", default=str(REPO / ".fuzz"), help="corpora, findings and logs")
    parser.add_argument("--targets", type=Path, default=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--reproduce", nargs="+", metavar=("TARGET", "FILE"), help="run saved inputs and exit")
    args = parser.parse_args(argv)
    if args.reproduce:
        return reproduce(args.reproduce[0], [Path(f) for f in args.reproduce[1:]], args.targets)
    paths = target_paths(args.targets)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            parser.error(f"no such target(s): {', '.join(sorted(unknown))}")
        paths = [p for p in paths if p.stem in wanted]
    if args.list:
        print("\n".join(p.stem for p in paths))
        return 0
    if not paths:
        parser.error(f"no targets in {args.targets}")
    runner = Runner(args)
    if runner.engine == "atheris" and not atheris_installed():
        parser.error("atheris is not installed: pip install '.[fuzz]' (or --engine mutator)")
    print(f"fuzzing {len(paths)} targets with {runner.engine}: runs={args.runs} seconds={args.seconds} "
          f"jobs={args.jobs} seed={args.seed}", file=sys.stderr, flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = []
        for result in pool.map(runner.run, paths):
            status = "ok" if result.ok else (result.error or f"{len(result.findings)} finding(s)")
            print(f"  {result.target}: {result.runs} runs in {result.seconds:.1f} s: {status}", file=sys.stderr,
                  flush=True)
            results.append(result)
    print(HEADER)
    print("\n".join(r.row() for r in results))
    findings = [(r.target, f) for r in results for f in r.findings]
    for target, finding in findings:
        print(f"\nFINDING {target}: {finding}\n  reproduce: python -m fuzz.run --reproduce {target} {finding}",
              file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
