"""JSON Schemas from Python type hints, and JSON values back into the hinted types.

Supported: ``str``, ``int``, ``float``, ``bool``, ``None``, ``list``/``Sequence``/``set``/``tuple``,
``dict[str, T]``, ``Optional``/``Union`` (and ``X | Y``), ``Literal``, ``Enum``, ``Any``, dataclasses,
``TypedDict`` and Pydantic models (when Pydantic is installed). ``Annotated[T, "text"]`` gives a
description.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import re
import sys
import types
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__all__ = ["type_schema", "from_json", "to_json", "function_schema", "docstring_parts"]

_NONE_TYPES = (type(None), None)
_MAX_DEPTH = 32


def _is_pydantic_model(tp: Any) -> bool:
    if not isinstance(tp, type):
        return False
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__annotations__") and hasattr(
        tp, "__total__"
    )


def _qualifiers() -> Tuple[Any, ...]:
    """``Required``, ``NotRequired`` and ``ReadOnly`` of ``typing`` and ``typing_extensions``: TypedDict
    key qualifiers, which say nothing about a value's type."""
    found = []
    for module in (typing, sys.modules.get("typing_extensions")):
        for name in ("Required", "NotRequired", "ReadOnly"):
            qualifier = getattr(module, name, None)
            if qualifier is not None:
                found.append(qualifier)
    return tuple(found)


def _union_args(tp: Any) -> Optional[Tuple[Any, ...]]:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return typing.get_args(tp)
    union_type = getattr(types, "UnionType", None)
    if union_type is not None and isinstance(tp, union_type):
        return typing.get_args(tp)
    return None


class _Builder:
    """Builds one schema; Pydantic definitions are gathered in ``defs`` for the root's ``$defs``."""

    def __init__(self) -> None:
        self.defs: Dict[str, Any] = {}

    def schema(self, tp: Any, depth: int = 0) -> Dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise TypeError(f"type {tp!r} nests too deeply (recursive types are not supported)")
        if tp is Any or tp is object:
            return {}
        if tp in _NONE_TYPES:
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in _qualifiers():
            return self.schema(args[0], depth + 1)
        if origin is typing.Annotated:
            schema = self.schema(args[0], depth + 1)
            for extra in args[1:]:
                if isinstance(extra, str):
                    schema = {**schema, "description": extra}
            return schema
        union = _union_args(tp)
        if union is not None:
            return {"anyOf": [self.schema(arg, depth + 1) for arg in union]}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"enum": [member.value for member in tp]}
        if origin in (list, set, frozenset, collections.abc.Sequence, collections.abc.Set, collections.abc.Iterable):
            item = self.schema(args[0], depth + 1) if args else {}
            schema: Dict[str, Any] = {"type": "array", "items": item}
            if origin in (set, frozenset, collections.abc.Set):
                schema["uniqueItems"] = True
            return schema
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": self.schema(args[0], depth + 1)}
            return {
                "type": "array",
                "prefixItems": [self.schema(arg, depth + 1) for arg in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        if origin in (dict, collections.abc.Mapping):
            if args and args[0] is not str:
                raise TypeError(f"{tp!r}: JSON object keys are strings")
            values = self.schema(args[1], depth + 1) if args else {}
            return {"type": "object", "additionalProperties": values}
        if tp in (list, tuple, set):
            return {"type": "array"}
        if tp is dict:
            return {"type": "object"}
        if _is_pydantic_model(tp):
            schema = dict(tp.model_json_schema())
            for name, definition in schema.pop("$defs", {}).items():
                if self.defs.setdefault(name, definition) != definition:
                    raise TypeError(f"two different models are named {name!r}; rename one")
            return schema
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            hints = typing.get_type_hints(tp, include_extras=True)
            properties: Dict[str, Any] = {}
            required: List[str] = []
            for field in dataclasses.fields(tp):
                if not field.init:
                    continue
                properties[field.name] = self.schema(hints.get(field.name, Any), depth + 1)
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    required.append(field.name)
            return _object(tp.__name__, properties, required, inspect.getdoc(tp))
        if _is_typeddict(tp):
            hints = typing.get_type_hints(tp, include_extras=True)
            required_keys = getattr(tp, "__required_keys__", frozenset(hints))
            properties = {name: self.schema(hint, depth + 1) for name, hint in hints.items()}
            return _object(tp.__name__, properties, [n for n in hints if n in required_keys], None)
        raise TypeError(f"kai cannot describe the type {tp!r} as JSON Schema")


def _object(title: str, properties: Dict[str, Any], required: List[str], doc: Optional[str]) -> Dict[str, Any]:
    schema: Dict[str, Any] = {"type": "object", "title": title, "properties": properties, "required": required}
    if doc and not doc.startswith(f"{title}("):
        schema["description"] = doc
    return schema


def type_schema(tp: Any) -> Dict[str, Any]:
    """The JSON Schema of values of a type."""
    builder = _Builder()
    schema = builder.schema(tp)
    if builder.defs:
        schema = {**schema, "$defs": builder.defs}
    return schema


def _expect(value: Any, kind: Union[type, Tuple[type, ...]], tp: Any) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"expected {tp!r}, got {type(value).__name__} {value!r:.80}")


def from_json(value: Any, tp: Any) -> Any:
    """A JSON value as a value of ``tp``; ``TypeError`` or ``ValueError`` when it is not one (a union
    takes the first member that fits)."""
    if tp is Any or tp is object:
        return value
    if tp in _NONE_TYPES:
        if value is not None:
            raise TypeError(f"expected null, got {value!r:.80}")
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated or origin in _qualifiers():
        return from_json(value, args[0])
    union = _union_args(tp)
    if union is not None:
        problems = []
        for arg in union:
            try:
                return from_json(value, arg)
            except (TypeError, ValueError) as problem:
                problems.append(str(problem))
        raise TypeError(f"{value!r:.80} fits none of {tp!r}: {'; '.join(problems)}")
    if tp is bool:
        _expect(value, bool, tp)
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool):
            raise TypeError(f"expected int, got bool {value!r}")
        _expect(value, int, tp)
        return value
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(f"expected float, got bool {value!r}")
        _expect(value, (int, float), tp)
        return float(value)
    if tp is str:
        _expect(value, str, tp)
        return value
    if origin is typing.Literal:
        if not any(value == arg and type(value) is type(arg) for arg in args):
            raise ValueError(f"{value!r:.80} is not one of {list(args)!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable):
        _expect(value, list, tp)
        return [from_json(item, args[0]) for item in value] if args else value
    if origin in (set, frozenset, collections.abc.Set):
        _expect(value, list, tp)
        items = [from_json(item, args[0]) for item in value] if args else value
        return frozenset(items) if origin is frozenset else set(items)
    if origin is tuple:
        _expect(value, list, tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(item, args[0]) for item in value)
        if args and len(value) != len(args):
            raise ValueError(f"expected {len(args)} items, got {len(value)}")
        return tuple(from_json(item, arg) for item, arg in zip(value, args)) if args else tuple(value)
    if origin in (dict, collections.abc.Mapping):
        _expect(value, dict, tp)
        return {key: from_json(item, args[1]) for key, item in value.items()} if len(args) == 2 else value
    if tp in (list, tuple, set, frozenset):
        _expect(value, list, tp)
        return tp(value)
    if tp is dict:
        _expect(value, dict, tp)
        return value
    if _is_pydantic_model(tp):
        return tp.model_validate(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        _expect(value, dict, tp)
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {field.name for field in dataclasses.fields(tp) if field.init}
        return tp(**{name: from_json(item, hints.get(name, Any)) for name, item in value.items() if name in fields})
    if _is_typeddict(tp):
        _expect(value, dict, tp)
        hints = typing.get_type_hints(tp, include_extras=True)
        return {name: from_json(item, hints[name]) if name in hints else item for name, item in value.items()}
    return value


def to_json(value: Any) -> Any:
    """A tool's return value as JSON-ready data: dataclasses, Pydantic models, enums, sets and tuples
    become dicts, values and lists."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if _is_pydantic_model(type(value)):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: to_json(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(item) for item in value]
    return value


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$")
_GOOGLE_ARG = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def docstring_parts(doc: Optional[str]) -> Tuple[str, Dict[str, str]]:
    """The description of a docstring (the text before its sections) and its parameters' descriptions,
    from Google style (``Args:``) or reST (``:param name:``) docstrings."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: List[str] = []
    params: Dict[str, str] = {}
    section: Optional[str] = None
    current: Optional[str] = None
    for line in lines:
        rest = _REST_PARAM.match(line)
        if rest:
            section, current = "rest", rest.group(1)
            params[current] = rest.group(2).strip()
            continue
        if line.strip().startswith(":"):
            section, current = "rest", None
            continue
        header = _SECTION.match(line)
        if header:
            section = header.group(1).lower()
            current = None
            continue
        if section is None:
            description.append(line)
        elif section in ("args", "arguments", "parameters", "params"):
            arg = _GOOGLE_ARG.match(line)
            if arg and not line.startswith((" " * 8, "\t\t")):
                current = arg.group(1).lstrip("*")
                params[current] = arg.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section == "rest" and current and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


def function_schema(
    function: Callable[..., Any], context_type: type
) -> Tuple[str, Dict[str, Any], Dict[str, Any], Optional[str]]:
    """A function's description, the JSON Schema of its parameters, their type hints by name, and the
    name of the parameter that takes the tool context (if any)."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function, include_extras=True)
    description, param_docs = docstring_parts(inspect.getdoc(function))
    builder = _Builder()
    properties: Dict[str, Any] = {}
    required: List[str] = []
    param_types: Dict[str, Any] = {}
    context_param: Optional[str] = None
    for name, parameter in signature.parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"tool {function.__name__!r}: *args and **kwargs cannot be described to a model")
        if parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {function.__name__!r}: positional-only parameters cannot be named by a model")
        hint = hints.get(name, Any)
        if hint is context_type:
            context_param = name
            continue
        schema = builder.schema(hint)
        if name in param_docs and "description" not in schema:
            schema = {**schema, "description": param_docs[name]}
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        else:
            default = to_json(parameter.default)
            if default is None or isinstance(default, (str, int, float, bool, list, dict)):
                schema = {**schema, "default": default}
        properties[name] = schema
        param_types[name] = hint
    parameters: Dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if builder.defs:
        parameters["$defs"] = builder.defs
    return description, parameters, param_types, context_param
