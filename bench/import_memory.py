"""What the daemon's imports cost in memory, for one site (issue 18, memory).

1. Runs ``fieldgate run`` on a copy of the site (state in a temporary directory, every bus, link and
   status port moved to a free port nobody listens on, so nothing is polled or sent) under
   ``python -X importtime`` for ``--seconds``; reads the process's VmRSS / RssAnon / RssFile, then stops it.
   The modules it imported, in the order their imports completed, are what the site costs (importtime does
   not log ``importlib.import_module``, the registry's way: step 2 loads the site, which imports those).
2. In a fresh interpreter, imports those modules in that order and loads the site, reading VmRSS after
   each one: the RSS each import step added, summed per package (``gateway.x`` / ``drivers.x`` per
   subpackage). A module's cost lands on whichever step first needs it, so read the sums, not the order.
3. The same under ``tracemalloc``: the Python heap the imports and the loaded site hold, by package of
   the allocating file. Native memory (shared libraries, pydantic-core's validators, SQLite) is not in it.

    .venv/bin/python bench/import_memory.py config/demo.yaml
    .venv/bin/python bench/import_memory.py --ingest          # bench/ingest.py's site (10 x 20 registers)

ROOT (``--root``) runs another checkout of the repository, e.g. a ``git archive`` of main.
"""

from __future__ import annotations

# The child interpreter (--child) must start lean: only what it needs to measure is imported up here.
import collections
import contextlib
import functools
import importlib
import importlib.abc
import json
import os
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def quiet_copy(site: Path, tmp: Path) -> Path:
    """The site with its state in ``tmp`` and every port it would use moved to a free one."""
    import yaml

    from sim.support import free_port

    data = yaml.safe_load(site.read_text())
    data["gateway"]["state_dir"] = str(tmp / "state")
    for section in ("buses", "links"):
        for entry in data.get(section) or []:
            if "port" in entry:
                entry["port"] = free_port()
    if isinstance(data.get("status"), dict) and "listen" in data["status"]:
        data["status"]["listen"] = f"127.0.0.1:{free_port()}"
    path = tmp / site.name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    for extra in ("devices",):  # `template:` devices resolve beside the site file
        if (site.parent / extra).is_dir():
            (tmp / extra).symlink_to((site.parent / extra).resolve())
    return path


def ingest_site(tmp: Path) -> Path:
    from bench.ingest import site_yaml
    from sim.support import free_port

    return site_yaml(tmp, [free_port() for _ in range(10)], 20, 100, free_port(), "fieldgate")


def proc_status(pid: int) -> dict[str, float]:
    wanted = ("VmRSS", "VmHWM", "RssAnon", "RssFile")
    return {line.split(":")[0]: int(line.split()[1]) / 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.split(":")[0] in wanted}


def run_daemon(root: Path, config: Path, seconds: float) -> tuple[list[str], dict[str, float]]:
    """(modules in the order their imports completed, memory of the process after ``seconds``)."""
    import re
    import signal
    import subprocess
    import time

    env = dict(os.environ, PYTHONPATH=str(root))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "gateway.cli", "run", str(config)],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    memory = proc_status(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=30)
    modules = [m.group(1) for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", err, re.M)]
    return modules, memory


def group_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in ("gateway", "drivers") else parts[0]


def vmrss() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Attribution(importlib.abc.MetaPathFinder):
    """Wraps every module's execution: its own cost is what its execution added minus its imports'."""

    def __init__(self, measure: Callable[[], float]) -> None:
        self.measure = measure
        self.stack: list[list[Any]] = []  # [name, at start, children's cost]
        self.own: collections.Counter[str] = collections.Counter()

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if loader is not None and hasattr(loader, "exec_module"):
                run = loader.exec_module
                with contextlib.suppress(AttributeError, TypeError):  # a loader that cannot be wrapped: cost to parent
                    setattr(loader, "exec_module", functools.partial(self._timed, name, run))  # noqa: B010
            return spec
        return None

    def _timed(self, name: str, run: Callable[[Any], None], module: Any) -> None:
        self.stack.append([name, self.measure(), 0.0])
        try:
            run(module)
        finally:
            _name, began, children = self.stack.pop()
            spent = self.measure() - began
            self.own[name] += spent - children
            if self.stack:
                self.stack[-1][2] += spent


def stairs(modules: list[str], site: str, traced: bool) -> dict[str, Any]:
    """Runs in the fresh interpreter: per package, the RSS (or traced heap) its modules' own execution added."""
    if traced:
        tracemalloc.start()
    measure: Callable[[], float] = (lambda: tracemalloc.get_traced_memory()[0] / 2**20) if traced else vmrss
    attribution = Attribution(measure)
    sys.meta_path.insert(0, attribution)
    start = measure()
    importlib.import_module("gateway.cli")
    from gateway.config import load_site

    before_load = measure()
    load_site(site)
    loaded = measure()
    for module in modules:
        if module not in sys.modules and not module.startswith("__"):
            with contextlib.suppress(Exception):  # a platform-specific module importtime listed as tried (nt)
                importlib.import_module(module)
    end = measure()
    sys.meta_path.remove(attribution)
    ours = sorted(name for name in sys.modules if name.split(".")[0] in ("gateway", "drivers"))
    by_group: collections.Counter[str] = collections.Counter()
    for name, own in attribution.own.items():
        by_group[group_of(name)] += own
    result: dict[str, Any] = {
        "start": round(start, 1), "end": round(end, 1), "load_the_site": round(loaded - before_load, 2), "ours": ours,
        "by_package": {k: round(v, 2) for k, v in by_group.most_common() if abs(v) >= 0.1},
        "top_modules": {k: round(v, 2) for k, v in attribution.own.most_common(30)}}
    if traced:
        by_file: collections.Counter[str] = collections.Counter()
        for stat in tracemalloc.take_snapshot().statistics("filename"):
            by_file[package_of(stat.traceback[0].filename)] += stat.size
        by_file = collections.Counter({k: v / 2**20 for k, v in by_file.items()})
        result["held_by_file_package"] = {k: round(v, 2) for k, v in by_file.most_common(25)}
    return result


def package_of(filename: str) -> str:
    path = Path(filename)
    parts = path.parts
    for anchor in ("site-packages", "python3.11"):
        if anchor in parts:
            rest = parts[parts.index(anchor) + 1:]
            return rest[0].removesuffix(".py") if rest else anchor
    for top in ("gateway", "drivers"):
        if top in parts:
            rest = parts[parts.index(top):]
            return ".".join(p.removesuffix(".py") for p in rest[:2])
    return path.name


def child(root: Path, modules: list[str], site: Path, traced: bool) -> dict[str, Any]:
    import subprocess

    listing = site.parent / "modules.json"
    listing.write_text(json.dumps(modules))
    cmd = [sys.executable, str(ROOT / "bench" / "import_memory.py"), "--child", str(listing), str(site)]
    if traced:
        cmd.append("--traced")
    out = subprocess.run(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def main() -> int:
    import argparse
    import tempfile

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("site", nargs="?", type=Path, help="site config (default with --ingest: the bench's)")
    parser.add_argument("--ingest", action="store_true", help="bench/ingest.py's site: 10 devices x 20 registers")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to run (a before build)")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long the daemon runs before it is read")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(stairs(json.loads(args.child.read_text()), str(args.site), args.traced)))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="fg-import-memory-"))
    config = ingest_site(tmp) if args.ingest else quiet_copy(args.site, tmp)
    modules, memory = run_daemon(args.root.resolve(), config, args.seconds)
    rss = child(args.root.resolve(), modules, config, traced=False)
    report = {
        "site": "bench/ingest.py's site" if args.ingest else str(args.site),
        "root": str(args.root),
        "daemon_after_s": args.seconds,
        "daemon_memory_mb": {k: round(v, 1) for k, v in memory.items()},
        "modules_imported": len(modules),
        "ours": rss.pop("ours"),
        "rss_mb": rss,
        "traced_mb": child(args.root.resolve(), modules, config, traced=True),
    }
    print(json.dumps(report, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
