"""Reading reviewed policy files (YAML) so that every error names its file and line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class PolicyFileError(ValueError):
    """A policy file that cannot be used; the message starts with ``file:line:``."""

    def __init__(self, file: Path, line: int | None, problem: str) -> None:
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {problem}")
        self.file = file
        self.line = line
        self.problem = problem


@dataclass(frozen=True)
class YamlDocument:
    """Parsed YAML plus the line of every mapping value and list item, for error messages."""

    file: Path
    data: Any
    lines: dict[Path_, int]

    def error(self, path: Path_, problem: str) -> PolicyFileError:
        line = None
        for depth in range(len(path), -1, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                break
        return PolicyFileError(self.file, line, problem)


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(file: Path) -> YamlDocument:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(file, None, f"cannot read: {exc.strerror}") from None
    try:
        try:  # libyaml parses the bundle ~5x faster (every start and reload reads it)
            node = yaml.compose(text, Loader=_FAST_LOADER)
            data = yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506  # CSafeLoader: a safe loader
        except yaml.YAMLError:  # name the problem as the reference parser words it
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyFileError(file, line, f"invalid YAML: {problem}") from None
    lines: dict[Path_, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return YamlDocument(file, data, lines)


def _collect_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            _collect_lines(value, child, lines)
            lines[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*path, index), lines)
