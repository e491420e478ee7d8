"""Site config files: the bounded YAML loader and validation (gateway/config/) on arbitrary bytes.

Documented behaviour: ``load_site_text`` returns a SiteConfig or raises ConfigError (file:line:col
lines), within the loader's limits (gateway/config/yamlbounds.py), whatever the text. Anything else
escaping, a hang or a blow-up is a crash. The bytes are decoded with surrogateescape, so text that
is not UTF-8 reaches the loader too (as ``load_site_text`` callers could hand it).

Seeds: the example sites and device templates (config/), every site of tests/cases/ (working and
config-error cases), and hostile shapes (alias bomb, recursive alias, deep nesting, long integer).
The public vectors beside the repository are protocol frames, not YAML, so none is used here.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import ConfigError, load_site_text

NAME = "yaml_config"
COVERS = ("gateway/config/yamlbounds.py", "gateway/config/yamlmarks.py", "gateway/config/loader.py",
          "gateway/config/templates.py")

POSITIONED = re.compile(r"^.+?:\d+:\d+: \S")
REPO = Path(__file__).resolve().parents[2]
HEAD = b"gateway: {id: gw, state_dir: /tmp/fieldgate-fuzz}\n"
BUILT_IN = [
    HEAD,
    HEAD + b"x0: &a [lol, lol]\nx1: &b [*a, *a, *a]\nx2: [*b, *b, *b]\n",
    HEAD + b"loop: &x [1, *x]\n",
    HEAD + b"m: &m {a: {b: *m}}\n",
    HEAD + b"x: " + b"[" * 70 + b"]" * 70 + b"\n",
    HEAD + b"health_interval: " + b"9" * 40 + b"\n",
    HEAD + b"x: !!python/object/apply:os.system [true]\n",
    HEAD + b"links:\n  - {type: mqtt, host: h, topic_prefix: 'fieldgate/+'}\n",
    HEAD + b"? [a]\n: b\n<<: {c: 1}\n",
    b"%YAML 1.1\n---\n" + HEAD + b"...\n---\nb: 1\n",
]


def seeds() -> list[bytes]:
    files = sorted((REPO / "config").glob("**/*.yaml")) + sorted((REPO / "tests" / "cases").glob("*/site.yaml"))
    found = []
    for path in files:
        try:
            found.append(path.read_bytes())
        except OSError:
            continue
    return found + BUILT_IN


def fuzz_one(data: bytes) -> None:
    try:
        load_site_text(data.decode("utf-8", "surrogateescape"), "fuzz.yaml")
    except ConfigError as exc:  # every problem says where: file:line:col (the site's or a template's)
        assert exc.lines and all(POSITIONED.match(line) for line in exc.lines), exc.lines
