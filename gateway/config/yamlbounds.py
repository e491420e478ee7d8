"""Limits on what one YAML config file may make the loader do, and the composer that keeps them.

A site file or device template reaches the box from a laptop, a USB stick or a config push, and
``fieldgate run`` re-reads it on every reload. Left to PyYAML, a 528-byte alias bomb expands to
gigabytes, a deeply nested document exhausts the recursion limit and a 100 000-digit integer
raises ValueError: the box dies before any error is printed. Here every such file is refused with
``file:line:col`` and the limit it crossed, in well under a second and a few megabytes.

Every limit is far above any real file: the largest shipped site (config/chemical-park.yaml) is
5 KiB with ~470 keys and values, 9 levels deep; no shipped file has a string over 600 characters
(a template's provenance note) or an integer over 5 digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

# 1 MiB: 200 times the largest real site. libyaml reads that much in ~0.15 s.
MAX_FILE_BYTES = 1024 * 1024
# Real files nest ~9 levels (buses → devices → points → report). Nesting is what makes a composer
# recurse, so it is refused long before Python's recursion limit.
MAX_DEPTH = 64
# Keys and values (mappings, lists, scalars) once every alias is expanded: 40 times the largest
# real site, about 2 000 points written out in full, more than one gateway can poll. An alias bomb
# ("billion laughs") is refused here, while it is being read, not after expansion. Device templates
# count too (templates.py): the site as validated stays within this, ~0.2 s and ~10 MB to load.
MAX_NODES = 20_000
# Uses of an alias (*name). A site that shares settings through anchors needs a few dozen.
MAX_ALIASES = 1_000
# One scalar (a key or a value): 64 KiB holds an inline PEM bundle with room to spare.
MAX_SCALAR_CHARS = 64 * 1024
# 2**64 has 20 digits; no register, timeout or count is longer. Turning a long digit string into an
# int is quadratic in CPython (and refused outright past 4300 digits).
MAX_INT_DIGITS = 30

_INT_TAG = "tag:yaml.org,2002:int"

try:  # libyaml, which PyYAML's wheels include: ~20 times faster than the pure-Python parser
    from yaml._yaml import CParser

    HAVE_LIBYAML = True
except ImportError:  # a PyYAML built without libyaml: the same limits, a slower parse (PureLoader)
    HAVE_LIBYAML = False

    class CParser:  # type: ignore[no-redef]
        """Stand-in so that FastLoader can be defined; never used without libyaml."""

        def __init__(self, stream: str) -> None:
            raise RuntimeError("PyYAML was built without libyaml")


class LimitExceeded(Exception):
    """A file crossed one of the limits above; ``mark`` is where (a PyYAML mark, 0-based)."""

    def __init__(self, mark: Any, message: str) -> None:
        self.mark = mark
        self.message = message
        super().__init__(message)


class BoundedComposer(Composer):
    """PyYAML's composer, counting as it goes: depth, values after alias expansion, aliases, scalar
    sizes; an alias inside the value it names (a cycle) is refused instead of built."""

    peek_event: Callable[[], Event]  # from the parser class it is mixed with

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._expanded = 0  # values in the document once every alias is expanded, so far
        self._aliases = 0
        self._open: set[str] = set()  # anchors whose value is still being read
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) → (values when expanded, levels deep)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event: Event = self.peek_event()
        if isinstance(event, AliasEvent):
            return self._compose_alias(event)
        self._depth += 1
        self._expanded += 1
        if self._depth > MAX_DEPTH:
            raise LimitExceeded(event.start_mark, f"nested more than {MAX_DEPTH} levels deep "
                                f"(limit: {MAX_DEPTH} levels)")
        self._check_total(event)
        if isinstance(event, ScalarEvent) and len(event.value) > MAX_SCALAR_CHARS:
            raise LimitExceeded(event.start_mark, f"a value of {len(event.value)} characters "
                                f"(limit: {MAX_SCALAR_CHARS} characters)")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._open.add(anchor)
        try:
            node = cast(Node, super().compose_node(parent, index))
        finally:
            if anchor is not None:
                self._open.discard(anchor)
            self._depth -= 1
        if isinstance(node, ScalarNode) and node.tag == _INT_TAG:
            digits = sum(ch.isalnum() for ch in node.value)
            if digits > MAX_INT_DIGITS:
                raise LimitExceeded(node.start_mark, f"an integer of {digits} digits "
                                    f"(limit: {MAX_INT_DIGITS} digits)")
        self._shape[id(node)] = _shape(node, self._shape)
        return node

    def _compose_alias(self, event: AliasEvent) -> Node:
        name = event.anchor
        if name in self._open:
            raise LimitExceeded(event.start_mark, f"alias *{name} is inside the value &{name} it names "
                                "(a recursive alias never ends)")
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            raise LimitExceeded(event.start_mark, f"more than {MAX_ALIASES} aliases (limit: {MAX_ALIASES})")
        # PyYAML's own alias handling: consumes the event, refuses an undefined alias.
        node = cast(Node, super().compose_node(None, None))  # type: ignore[arg-type]
        values, levels = self._shape[id(node)]
        if self._depth + levels > MAX_DEPTH:
            raise LimitExceeded(event.start_mark, f"alias *{name} nests the document more than {MAX_DEPTH} "
                                f"levels deep (limit: {MAX_DEPTH} levels)")
        self._expanded += values
        self._check_total(event)
        return node

    def _check_total(self, event: Event) -> None:
        if self._expanded > MAX_NODES:
            raise LimitExceeded(event.start_mark, f"more than {MAX_NODES} keys and values once aliases are "
                                f"expanded (limit: {MAX_NODES})")


def _shape(node: Node, known: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(values when expanded, levels deep) of a node whose children are already known."""
    if isinstance(node, SequenceNode):
        children = list(node.value)
    elif isinstance(node, MappingNode):
        children = [child for pair in node.value for child in pair]
    else:
        return 1, 1
    shapes = [known[id(child)] for child in children]
    return 1 + sum(v for v, _ in shapes), 1 + max((levels for _, levels in shapes), default=0)


class PureLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,
                 BoundedComposer, SafeConstructor, Resolver):
    """PyYAML's own parser: the same limits, ~20 times slower (used where libyaml is missing)."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


class FastLoader(BoundedComposer, CParser, SafeConstructor, Resolver):
    """libyaml's events, our composer (libyaml's own composer cannot be bounded from Python)."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        BoundedComposer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)


def compose_bounded(text: str, loader_class: type[FastLoader | PureLoader] | None = None) -> Node | None:
    """The document's node tree, within every limit above; LimitExceeded or yaml.YAMLError otherwise."""
    loader: Any = (loader_class or (FastLoader if HAVE_LIBYAML else PureLoader))(text)
    try:
        node: Node | None = loader.get_single_node()
        return node
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own cap (1000) met before ours
            raise LimitExceeded(exc.problem_mark, f"nested more than {MAX_DEPTH} levels deep "
                                f"(limit: {MAX_DEPTH} levels)") from None
        raise
    finally:
        loader.dispose()
