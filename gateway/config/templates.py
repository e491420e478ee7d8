"""Device templates: a site config names a device model, the template supplies its register map.

A template is ``config/devices/<name>.yaml`` with ``description``, ``provenance`` and a
``device`` mapping (everything a bus device takes: timings, points). In a site config::

    devices:
      - name: dam-radar
        template: radar-level          # config/devices/radar-level.yaml
        unit_id: 3                     # any device key overrides the template's
        point_prefix: dam.             # default "<device name>."
        point_overrides:               # per template point, keys merged over the template's
          level: {valid_max: 40, report: {deadband: 0.005}}
        points: [...]                  # extra points, appended

Resolution rewrites the document in place before validation and carries the line marks
along: an error in a template's point points at the template file, an error in an
override at the site file.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from gateway.config.errors import ConfigError
from gateway.config.yamlbounds import MAX_NODES
from gateway.config.yamlmarks import ConfigSyntaxError, Mark, MarkedDocument, Path_, load_marked

REPO_DEVICES = Path(__file__).resolve().parents[2] / "config" / "devices"
SYSTEM_DEVICES = Path("/etc/fieldgate/devices")
INSTALLED_DEVICES = Path("/opt/fieldgate/config/devices")  # the shipped templates, put there by install.sh
TEMPLATE_KEYS = ("template", "point_prefix", "point_overrides")
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def template_dirs(site_file: str) -> list[Path]:
    """Where templates are looked up, first match wins: beside the site file, $FIELDGATE_DEVICES, built-ins."""
    dirs = [Path(site_file).parent / "devices"]
    dirs += [Path(p) for p in os.environ.get("FIELDGATE_DEVICES", "").split(os.pathsep) if p]
    return [*dirs, SYSTEM_DEVICES, INSTALLED_DEVICES, REPO_DEVICES]


def known_templates(dirs: list[Path]) -> list[str]:
    names: set[str] = set()
    for directory in dirs:
        if directory.is_dir():
            names.update(p.stem for p in directory.glob("*.yaml"))
    return sorted(names)


def find_template(name: str, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        candidate = directory / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


def load_template(path: Path) -> MarkedDocument:
    try:
        doc = load_marked(path)
    except ConfigSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    data = doc.data
    device = data.get("device") if isinstance(data, dict) else None
    if not isinstance(device, dict) or not isinstance(device.get("points"), list):
        raise ConfigError([f"{doc.mark_for(('device',))}: a device template needs 'device:' with a 'points:' list"])
    for key in ("name", "unit_id"):
        if key in device:
            raise ConfigError([f"{doc.mark_for(('device', key), prefer_key=True)}: a template must not set "
                               f"'{key}': the site config gives it"])
    return doc


def resolve_templates(doc: MarkedDocument, dirs: list[Path] | None = None) -> None:
    """Expand every ``template:`` device of ``doc`` in place; ConfigError (file:line:col) on mistakes."""
    buses = doc.data.get("buses") if isinstance(doc.data, dict) else None
    if not isinstance(buses, list):
        return
    search = dirs if dirs is not None else template_dirs(doc.file)
    cache: dict[str, MarkedDocument] = {}
    for i, bus in enumerate(buses):
        devices = bus.get("devices") if isinstance(bus, dict) else None
        if not isinstance(devices, list):
            continue
        for j, device in enumerate(devices):
            if isinstance(device, dict) and "template" in device:
                _expand(doc, ("buses", i, "devices", j), device, search, cache)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    import difflib  # only for an error: a running site does not hold it (issue 18, bench/RESULTS.md)

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _expand(doc: MarkedDocument, base: Path_, site: dict[str, Any], dirs: list[Path],
            cache: dict[str, MarkedDocument]) -> None:
    name = site["template"]
    where = doc.mark_for((*base, "template"))
    if not isinstance(name, str) or not TEMPLATE_NAME.match(name):  # a file name: no path, no NUL, not too long
        raise ConfigError([f"{where}: template: takes a template name such as radar-level"])
    if name not in cache:
        path = find_template(name, dirs)
        if path is None:
            known = known_templates(dirs)
            hint = _did_you_mean(name, known)
            raise ConfigError([f"{where}: unknown device template '{name}'{hint} (known: {', '.join(known)})"])
        cache[name] = load_template(path)
    template = cache[name]
    if _size(doc) + _size(template) > MAX_NODES:
        raise ConfigError([f"{where}: device templates expand this site to more than {MAX_NODES} keys and "
                           f"values (limit: {MAX_NODES})"])
    merged: dict[str, Any] = copy.deepcopy(template.data["device"])
    t_points: list[Any] = merged["points"]
    t_ids = [p.get("id") if isinstance(p, dict) else None for p in t_points]

    prefix = site.get("point_prefix", f"{site.get('name', name)}.")
    if not isinstance(prefix, str):
        raise ConfigError([f"{doc.mark_for((*base, 'point_prefix'))}: point_prefix: takes text such as 'dam.'"])
    overrides = site.get("point_overrides", {})
    if not isinstance(overrides, dict):
        raise ConfigError([f"{doc.mark_for((*base, 'point_overrides'))}: point_overrides: maps a template point "
                           "id to the keys to change"])
    for point_id, change in overrides.items():
        if point_id not in t_ids:
            hint = _did_you_mean(str(point_id), [str(t) for t in t_ids])
            raise ConfigError([f"{doc.mark_for((*base, 'point_overrides', point_id), prefer_key=True)}: "
                               f"template '{name}' has no point '{point_id}'{hint}"])
        if not isinstance(change, dict):
            raise ConfigError([f"{doc.mark_for((*base, 'point_overrides', point_id))}: give the keys to change, "
                               "e.g. {valid_max: 40}"])
        _merge(t_points[t_ids.index(point_id)], change)
    for point in t_points:
        if isinstance(point, dict) and isinstance(point.get("id"), str):
            point["id"] = prefix + point["id"]
    extra = site.get("points", [])
    for key, value in site.items():
        if key not in (*TEMPLATE_KEYS, "points"):
            merged[key] = copy.deepcopy(value)
    merged["points"] = t_points + (list(extra) if isinstance(extra, list) else [extra])
    _move_marks(doc, base, template, site, t_ids)
    _set(doc.data, base, merged)


def _size(doc: MarkedDocument) -> int:
    """Keys and values in a document (each has one mark), as the YAML composer counts them."""
    return len(doc.value_marks) + len(doc.key_marks)


def _merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _set(data: Any, path: Path_, value: Any) -> None:
    for segment in path[:-1]:
        data = data[segment]
    data[path[-1]] = value


def _move_marks(doc: MarkedDocument, base: Path_, template: MarkedDocument, site: dict[str, Any],
                t_ids: list[Any]) -> None:
    """Re-key the marks so every merged value still points at the file and line it came from."""
    n = len(base)
    t_count = len(t_ids)
    for marks, t_marks in ((doc.value_marks, template.value_marks), (doc.key_marks, template.key_marks)):
        moved: dict[Path_, Mark] = {}
        for path, mark in t_marks.items():
            if path[:1] == ("device",) and len(path) > 1:
                moved[(*base, *path[1:])] = mark
        for path in [p for p in marks if p[:n] == base and len(p) > n]:
            mark = marks.pop(path)
            rel = path[n:]
            if rel[0] == "points" and len(rel) > 1 and isinstance(rel[1], int):
                moved[(*base, "points", rel[1] + t_count, *rel[2:])] = mark
            elif rel[0] == "points":
                moved[(*base, "points")] = mark
            elif rel[0] == "point_overrides" and len(rel) > 1 and rel[1] in t_ids:
                # An error on the whole point (e.g. min > max) is most likely the override's doing.
                moved[(*base, "points", t_ids.index(rel[1]), *rel[2:])] = mark
            elif rel[0] not in TEMPLATE_KEYS:
                moved[path] = mark
        marks.update(moved)
