"""YAML with line numbers: a policy file read into plain data, with the line of every key and list item.

Problems are recorded against a path into that data (`rules[2].when.params.env`) and shown at its line,
so every message names the file, line and field; `validate` turns pydantic's errors into such problems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from bot.actions.policy.rules import suggest

FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """`rules[2].when.params.env`."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


class Document:
    """One policy file's data, with the line of every key and list item."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[FieldPath, int] = {(): 1}

    def line(self, path: FieldPath) -> int:
        """The line of the deepest part of `path` that exists in the file."""
        for end in range(len(path), -1, -1):
            if (line := self.lines.get(path[:end])) is not None:
                return line
        return 1


class Problems:
    """Problems found so far, each shown as `file, line N: field: message`; a repeat is kept once."""

    def __init__(self) -> None:
        self.items: list[tuple[str, int, str]] = []

    def add(self, doc: Document, path: FieldPath, message: str, *, at: FieldPath | None = None) -> None:
        """Record a problem shown at field `path`, on the line of `at` (default: `path`)."""
        line = doc.line(path if at is None else at)
        field = f"{format_path(path)}: " if path else ""
        item = (doc.display, line, f"{doc.display}, line {line}: {field}{message}")
        if item not in self.items:
            self.items.append(item)

    def texts(self) -> list[str]:
        """In file-name order (the order files are read), then by line."""
        return [text for _, _, text in sorted(self.items, key=lambda item: item[:2])]


def read_yaml(text: str, doc: Document, problems: Problems) -> Any:
    """The file's data with `doc.lines` filled in; None when it is empty or not YAML (then reported)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        return None if node is None else _to_data(node, (), doc, problems, yaml.SafeLoader(""))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        doc.lines[("yaml",)] = mark.line + 1 if mark else 1
        problems.add(
            doc, (), f"not valid YAML: {error.problem or error}; check indentation and quoting", at=("yaml",)
        )
    except yaml.YAMLError as error:
        problems.add(doc, (), f"not valid YAML: {error}")
    except RecursionError:  # PyYAML composes, and we convert, recursively
        problems.add(doc, (), "nested too deeply; a policy file needs a few levels of indentation")
    return None


def _to_data(
    node: yaml.Node, path: FieldPath, doc: Document, problems: Problems, loader: yaml.SafeLoader
) -> Any:
    if isinstance(node, yaml.MappingNode):
        try:
            loader.flatten_mapping(node)  # applies `<<:` merge keys, so anchors work as in any YAML tool
        except yaml.MarkedYAMLError as error:
            doc.lines[(*path, "<<")] = (error.problem_mark or node.start_mark).line + 1
            problems.add(
                doc, path, f"<<: {error.problem or error}; merge a mapping (<<: *name)", at=(*path, "<<")
            )
            return {}
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                problems.add(doc, path, f"line {key_node.start_mark.line + 1}: keys must be plain words")
                continue
            if key in result:
                first = doc.lines[(*path, key)]
                doc.lines[(*path, key, "again")] = key_node.start_mark.line + 1
                problems.add(
                    doc, (*path, key), f"duplicate key (first at line {first})", at=(*path, key, "again")
                )
                continue
            doc.lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _to_data(value_node, (*path, key), doc, problems, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            doc.lines[(*path, index)] = item.start_mark.line + 1
            items.append(_to_data(item, (*path, index), doc, problems, loader))
        return items
    # YAML 1.1 reads an unquoted 17:00 as the base-60 integer 1020; a policy always means the clock time.
    if node.tag == "tag:yaml.org,2002:int" and ":" in str(node.value):
        return str(node.value)
    try:
        return loader.construct_object(node, deep=True)
    except Exception as error:  # PyYAML's constructors raise ValueError, KeyError, … for `!!bool maybe`
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        reason = error.problem if isinstance(error, yaml.MarkedYAMLError) else str(error)
        problems.add(
            doc, path, f"cannot read {node.value!r} as {tag} ({reason}); put it in quotes to keep it as text"
        )
        return None


# ---- pydantic errors, reported at the lines they are about

_SHAPES = {
    "model_type": "must be a mapping (name: value)",
    "dict_type": "must be a mapping (name: value)",
    "tuple_type": "must be a list, such as [a, b]",
    "list_type": "must be a list, such as [a, b]",
}


def _data_path(data: Any, loc: Iterable[str | int]) -> FieldPath:
    """The part of a pydantic error location that exists in the data (drops union tags and missing keys)."""
    path: list[str | int] = []
    for key in loc:
        in_dict = isinstance(data, dict) and key in data
        if not (in_dict or (isinstance(data, list) and isinstance(key, int) and 0 <= key < len(data))):
            continue
        data = data[key]
        path.append(key)
    return tuple(path)


def _fields_at(model: type[BaseModel], loc: Iterable[str | int]) -> list[str]:
    """The field names of the model found by following `loc` from `model`, to list what is valid."""
    current: type[BaseModel] | None = model
    for key in loc:
        if current is None:
            return []
        names = {info.alias or name: info for name, info in current.model_fields.items()}
        if key in names:
            current = _model_in(names[key].annotation)
    return [] if current is None else [info.alias or name for name, info in current.model_fields.items()]


_M = TypeVar("_M", bound=BaseModel)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((model for arg in get_args(annotation) if (model := _model_in(arg))), None)


def validate(model: type[_M], data: Any, doc: Document, path: FieldPath, problems: Problems) -> _M | None:
    """`data` (found at `path`) as a `model`, or None with every error added to `problems` at its line."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        for item in error.errors():
            loc = item["loc"]
            found = (*path, *_data_path(data, loc))
            if item["type"] == "missing":
                problems.add(doc, found, f"missing required field {loc[-1]!r}")
            elif item["type"] == "extra_forbidden":
                # A parameter's name is its key, so `name` is not offered as a field to write.
                valid = [
                    name for name in _fields_at(model, loc[:-1]) if name != "name" or "params" not in loc
                ]
                hint = f"{suggest(str(loc[-1]), valid)}; valid fields: {', '.join(valid)}" if valid else ""
                problems.add(doc, found[:-1], f"unknown field {loc[-1]!r}{hint}", at=found)
            elif item["type"] == "literal_error":
                problems.add(doc, found, f"{item['input']!r} is not allowed; use {item['ctx']['expected']}")
            else:
                # Pydantic names our private classes ("instance of _WhenFile"); say it in YAML terms.
                message = _SHAPES.get(item["type"], item["msg"].removeprefix("Value error, "))
                shown = item["input"]
                got = f" (got {shown!r})" if not isinstance(shown, dict | list) else ""
                if item["type"] == "string_type" and isinstance(shown, bool):
                    got += "; put it in quotes: YAML reads a bare yes, no, on or off as true or false"
                problems.add(doc, found, f"{message[:1].lower()}{message[1:]}{got}")
        return None
