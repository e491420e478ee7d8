"""YAML loading that remembers where every value came from.

PyYAML's composer gives each node a start mark (line, column). We build plain
Python data from the node tree and, beside it, a map from the data path
(("buses", 0, "host")) to the position of that value and of its key, so a
validation error can point at the exact spot in the technician's file.
Duplicate keys are errors here: PyYAML would silently keep the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise ConfigSyntaxError(_mark(self.file, key_node), "YAML merge keys (<<) are not supported")
                key = self._scalars.construct_object(key_node)
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
        return self._scalars.construct_object(node)


def load_marked(path: str | Path) -> MarkedDocument:
    """Read one YAML document with marks. Raises ConfigSyntaxError with file:line:col."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigSyntaxError(None, "file not found", file) from None
    except IsADirectoryError:
        raise ConfigSyntaxError(None, "is a directory, expected a YAML file", file) from None
    except PermissionError:
        raise ConfigSyntaxError(None, "permission denied", file) from None
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(None, f"not UTF-8 text (byte {exc.start})", file) from None
    return parse_marked(text, file)


def parse_marked(text: str, file: str = "<string>") -> MarkedDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Mark(file, mark.line + 1, mark.column + 1) if mark else None
        problem = exc.problem or exc.context or "YAML syntax error"
        raise ConfigSyntaxError(where, f"YAML syntax error: {problem}", file) from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(None, f"YAML error: {exc}", file) from None
    builder = _Builder(file)
    data: Any = {} if node is None else builder.build(node, ())
    return MarkedDocument(data, file, builder.value_marks, builder.key_marks)
