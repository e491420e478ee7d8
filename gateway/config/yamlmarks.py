"""YAML loading that remembers where every value came from.

PyYAML's composer gives each node a start mark (line, column). We build plain
Python data from the node tree and, beside it, a map from the data path
(("buses", 0, "host")) to the position of that value and of its key, so a
validation error can point at the exact spot in the technician's file.
Duplicate keys are errors here: PyYAML would silently keep the last one. The node tree comes from
the bounded composer (yamlbounds.py): every limit it keeps is a file:line:col error here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config.yamlbounds import MAX_FILE_BYTES, LimitExceeded, compose_bounded

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ConfigSyntaxError(Exception):
    """A YAML file that cannot be read or parsed; ``str()`` is one line with file:line:col."""

    def __init__(self, mark: Mark | None, message: str, file: str = "") -> None:
        self.mark = mark
        self.message = message
        where = str(mark) if mark else file
        super().__init__(f"{where}: {message}")


@dataclass
class MarkedDocument:
    data: Any
    file: str
    value_marks: dict[Path_, Mark]
    key_marks: dict[Path_, Mark]

    def mark_for(self, path: Path_, *, prefer_key: bool = False) -> Mark:
        """The most precise mark for ``path``, walking up to a parent if needed."""
        for cut in range(len(path), -1, -1):
            sub = path[:cut]
            if prefer_key and sub in self.key_marks:
                return self.key_marks[sub]
            if sub in self.value_marks:
                return self.value_marks[sub]
        return Mark(self.file, 1, 1)


def dotted(path: Path_) -> str:
    """``("buses", 0, "name")`` as the technician reads it: ``buses[0].name``."""
    out = ""
    for segment in path:
        out += f"[{segment}]" if isinstance(segment, int) else (f".{segment}" if out else str(segment))
    return out


_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


def _mark(file: str, node: yaml.Node) -> Mark:
    return Mark(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.value_marks: dict[Path_, Mark] = {}
        self.key_marks: dict[Path_, Mark] = {}
        # Scalars are resolved by the safe constructor so "1.5" is a float and "on" stays YAML 1.1-compatible.
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.value_marks[path] = _mark(self.file, node)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in (_MAP, _SEQ):
            # Tags on mappings and lists (!!python/object/apply, !!set...) would be ignored: say so instead.
            raise ConfigSyntaxError(_mark(self.file, node), f"cannot read this value: the tag {node.tag} is not "
                                    "supported in a config file")
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigSyntaxError(_mark(self.file, key_node), "YAML merge keys (<<) are not supported")
                key = self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str | int):
                    raise ConfigSyntaxError(_mark(self.file, key_node), "mapping keys must be plain names")
                key = str(key)
                if key in out:
                    first = self.key_marks[(*path, key)]
                    raise ConfigSyntaxError(
                        _mark(self.file, key_node), f"duplicate key '{key}' (first given at line {first.line})"
                    )
                self.key_marks[(*path, key)] = _mark(self.file, key_node)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._scalars.construct_object(node)
        except yaml.YAMLError as exc:  # an unknown or unsafe tag (!!python/object...)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigSyntaxError(_mark(self.file, node), f"cannot read this value: {problem}") from None
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # An explicit tag the text does not fit: `!!int abc`, `!!bool maybe`, `!!timestamp noon`.
            shown = str(node.value)[:40]
            raise ConfigSyntaxError(_mark(self.file, node), f"cannot read '{shown}' as {node.tag}") from None


def load_marked(path: str | Path) -> MarkedDocument:
    """Read one YAML document with marks. Raises ConfigSyntaxError with file:line:col."""
    file = str(path)
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            raw = stream.read(MAX_FILE_BYTES + 1)  # a device file or pipe has no size: read no more than this
    except FileNotFoundError:
        raise ConfigSyntaxError(None, "file not found", file) from None
    except IsADirectoryError:
        raise ConfigSyntaxError(None, "is a directory, expected a YAML file", file) from None
    except PermissionError:
        raise ConfigSyntaxError(None, "permission denied", file) from None
    except OSError as exc:
        raise ConfigSyntaxError(None, f"cannot read: {exc.strerror or exc}", file) from None
    if len(raw) > MAX_FILE_BYTES:
        shown = f"{size} bytes" if size > MAX_FILE_BYTES else "more bytes than that"
        raise ConfigSyntaxError(Mark(file, 1, 1), f"the file holds {shown} (limit: {MAX_FILE_BYTES} bytes, 1 MiB)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = _at_index(file, raw[:exc.start].decode("utf-8", "replace"), exc.start)
        raise ConfigSyntaxError(where, f"not UTF-8 text (byte {exc.start})", file) from None
    return parse_marked(text, file)


def parse_marked(text: str, file: str = "<string>") -> MarkedDocument:
    if len(text) > MAX_FILE_BYTES:
        raise ConfigSyntaxError(Mark(file, 1, 1), f"the text holds {len(text)} characters "
                                f"(limit: {MAX_FILE_BYTES} bytes, 1 MiB)")
    try:
        node = compose_bounded(text)
    except LimitExceeded as exc:
        raise ConfigSyntaxError(_at(file, exc.mark), exc.message, file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "YAML syntax error"
        raise ConfigSyntaxError(_at(file, mark), f"YAML syntax error: {problem}", file) from None
    except yaml.reader.ReaderError as exc:  # a control character or a bad code point
        # libyaml reports byte offsets, PyYAML characters: point at the first such character instead.
        where = _at_index(file, text, max(text.find(chr(exc.character)), 0))
        raise ConfigSyntaxError(where, f"YAML syntax error: character #x{exc.character:04x}: {exc.reason}") from None
    except UnicodeEncodeError as exc:  # text that was never UTF-8 (lone surrogates), handed to load_site_text
        raise ConfigSyntaxError(_at_index(file, text, exc.start), "not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(Mark(file, 1, 1), f"YAML error: {str(exc).splitlines()[0]}", file) from None
    builder = _Builder(file)
    data: Any = {} if node is None else builder.build(node, ())
    return MarkedDocument(data, file, builder.value_marks, builder.key_marks)


def _at(file: str, mark: Any) -> Mark:
    return Mark(file, mark.line + 1, mark.column + 1) if mark is not None else Mark(file, 1, 1)


def _at_index(file: str, text: str, index: int) -> Mark:
    """The line and column of ``text[index]`` (or of its end when ``index`` is past it)."""
    before = text[:index]
    return Mark(file, before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1)
