"""Load a site config and turn every problem into ``file:line:column: message`` lines."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from gateway.config.errors import ConfigError
from gateway.config.site import SiteConfig, site_model
from gateway.config.yamlmarks import (
    ConfigSyntaxError,
    Mark,
    MarkedDocument,
    Path_,
    dotted,
    load_marked,
    parse_marked,
)
from gateway.i18n import _
from gateway.i18n.validation import pydantic_message
from gateway.shared import PlacedConfigError


def load_site(path: str | Path) -> SiteConfig:
    try:
        doc = load_marked(path)
    except ConfigSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    site: SiteConfig = validate_document(doc)
    return site


def load_site_text(text: str, file: str = "<string>") -> SiteConfig:
    try:
        doc = parse_marked(text, file)
    except ConfigSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    site: SiteConfig = validate_document(doc)
    return site


def validate_document(doc: MarkedDocument, model: type[BaseModel] = SiteConfig) -> Any:
    if not isinstance(doc.data, dict):
        kind = type(doc.data).__name__
        raise ConfigError([f"{doc.mark_for(())}: the config must be a mapping (key: value), got {kind}"])
    validate: Callable[[Any], Any] = model.model_validate
    if model is SiteConfig:
        from gateway.config.templates import resolve_templates

        resolve_templates(doc)  # `template:` devices → config/devices/*.yaml, marks kept
        model = site_model(doc.data)  # only the driver models this file names
        # A validator of its own for this file, dropped with the adapter: `model_validate` would keep one on the
        # (cached) site model for the daemon's lifetime (0.7-0.9 MB idle on the demo site), used again only by
        # a reload or a roll-out, which build one again in ~20 ms off the event loop (issue 18, idle memory).
        # The model stays deferred (StrictModel's `defer_build`): a dump of the site builds its serializer on use.
        validate = TypeAdapter(model).validate_python
    try:
        return validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, doc, model)) from None


# A runaway file can hold thousands of mistakes: the technician fixes the first ones first, and a
# reload log or a command reply must stay readable. The rest are counted, not listed.
MAX_ERROR_LINES = 100


def format_errors(exc: ValidationError, doc: MarkedDocument, model: type[BaseModel]) -> list[str]:
    located: dict[tuple[int, int], list[tuple[Mark, Any, Path_, str | None]]] = {}
    for error in exc.errors(include_url=False):
        placed = error.get("ctx", {}).get("error")
        if isinstance(placed, PlacedConfigError):
            # Problems across fields or sections, each at the value at fault: the paths are the raising
            # model's, below its own loc (``error`` None: the text is final).
            for problem_path, text in placed.problems:
                path, _missing = _resolve(doc.data, (*error["loc"], *problem_path))
                mark = doc.mark_for(path)
                located.setdefault((mark.line, mark.column), []).append((mark, None, path, text))
            continue
        path, leftover = _resolve(doc.data, tuple(error["loc"]))
        mark = _mark_for_error(error["type"], path, doc)
        located.setdefault((mark.line, mark.column), []).append((mark, error, path, leftover))
    lines: list[str] = []
    positions = sorted(located)
    for n, position in enumerate(positions):
        if len(lines) >= MAX_ERROR_LINES:
            left = sum(len(located[p]) for p in positions[n:])
            lines.append(f"{located[position][0][0]}: {left} more problem(s) from here on not shown")
            break
        # Messages (with their did-you-mean search) only for the lines shown, in order at each spot.
        here = {f"{mark}: {_message(error, path, leftover, doc, model)}" if error is not None
                else f"{mark}: {dotted(path)}: {leftover}"
                for mark, error, path, leftover in located[position]}
        lines.extend(sorted(here))
    return lines


def _mark_for_error(kind: str, path: Path_, doc: MarkedDocument) -> Mark:
    if kind == "extra_forbidden":
        return doc.mark_for(path, prefer_key=True)
    if kind == "union_tag_invalid":
        return doc.mark_for((*path, "type"))
    return doc.mark_for(path)


def _resolve(data: Any, loc: tuple[Any, ...]) -> tuple[Path_, str | None]:
    """Map pydantic's loc onto the data path; union tags and validator names are skipped."""
    path: list[str | int] = []
    current = data
    for i, segment in enumerate(loc):
        if _has(current, segment):
            path.append(segment)
            current = current[segment]
        elif i == len(loc) - 1 and isinstance(segment, str):
            return tuple(path), segment  # a missing key: point at the mapping that lacks it
    return tuple(path), None


def _has(container: Any, segment: Any) -> bool:
    if isinstance(container, dict):
        return segment in container
    return isinstance(container, list) and isinstance(segment, int) and 0 <= segment < len(container)


def _message(
    error: Any, path: Path_, leftover: str | None, doc: MarkedDocument, model: type[BaseModel]
) -> str:
    kind = error["type"]
    where = dotted(path)
    if kind == "missing":
        return _("{where}: missing required key '{key}'").format(where=where, key=leftover)
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _allowed_keys(model, doc.data, path[:-1])
        hint = _did_you_mean(key, allowed)
        return _("{where}: unknown key '{key}'").format(where=where, key=key) + hint
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag = str(ctx.get("tag", "?"))
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
        hint = _did_you_mean(tag, expected)
        return (_("{where}: unknown type '{tag}'").format(where=dotted((*path, "type")), tag=tag) + hint
                + " " + _("(known: {names})").format(names=", ".join(expected)))
    if kind == "union_tag_not_found":
        return _("{where}: missing required key '{key}'").format(where=where, key="type")
    text = pydantic_message(kind, error.get("ctx")) or str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return f"{where}: {text}" if where else text


def _did_you_mean(word: str, candidates: list[str]) -> str:
    import difflib  # only for an error: a running site does not hold it (issue 18, bench/RESULTS.md)

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return " " + _("(did you mean '{name}'?)").format(name=close[0]) if close else ""


def _allowed_keys(model: type[BaseModel], data: Any, path: Path_) -> list[str]:
    """Field names of the model that sits at ``path`` in ``data`` (follows lists and tagged unions)."""
    current_model: type[BaseModel] | None = model
    current: Any = data
    annotation: Any = None
    for segment in path:
        if current_model is not None and isinstance(segment, str):
            field = current_model.model_fields.get(segment)
            if field is None:
                return []
            annotation = field.annotation
            current_model = None
        elif isinstance(segment, int):
            annotation = _item_type(annotation)
        if isinstance(current, dict):
            current = current.get(segment)
        elif isinstance(current, list) and isinstance(segment, int) and 0 <= segment < len(current):
            current = current[segment]
        else:
            current = None
        current_model = _model_for(annotation, current)
        if current_model is None and not isinstance(current, list):
            return []
    return list(current_model.model_fields) if current_model else []


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(_strip(annotation))
    return args[0] if args else None


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _model_for(annotation: Any, value: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [m for m in (_strip(a) for a in typing.get_args(annotation))
                   if isinstance(m, type) and issubclass(m, BaseModel)]
        tag = value.get("type") if isinstance(value, dict) else None
        for member in members:
            field = member.model_fields.get("type")
            if field is not None and tag in typing.get_args(field.annotation):
                return member
        return members[0] if len(members) == 1 else None
    return None
