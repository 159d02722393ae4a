"""Plain Python functions as tools."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Generic, Optional, TypeVar, Union, overload

from kai import _kai
from kai._schema import from_json, function_schema, to_json

__all__ = ["FunctionTool", "tool", "native_tool"]

R = TypeVar("R")


class _Invoker:
    """Calls a tool's function with the model's arguments converted to its type hints. The native tool
    holds this, not the ``FunctionTool``, so no reference cycle runs through native code (which the
    garbage collector cannot see)."""

    def __init__(self, function: Callable[..., Any], param_types: Dict[str, Any], context_param: Optional[str]) -> None:
        self.function = function
        self.param_types = param_types
        self.context_param = context_param

    def arguments(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Dict[str, Any]:
        unexpected = set(arguments) - set(self.param_types)
        if unexpected:
            raise _kai.ToolError(f"unexpected arguments: {', '.join(sorted(unexpected))}")
        try:
            values = {name: from_json(value, self.param_types[name]) for name, value in arguments.items()}
        except (TypeError, ValueError) as error:
            raise _kai.ToolError(f"invalid arguments: {error}") from error
        if self.context_param is not None:
            values[self.context_param] = context
        return values

    def call(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Any:
        return to_json(self.function(**self.arguments(arguments, context)))

    async def call_async(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Any:
        return to_json(await self.function(**self.arguments(arguments, context)))


class FunctionTool(Generic[R]):
    """A function the model can call. Calling the tool object calls the function itself.

    The arguments' JSON Schema comes from the type hints; the description from the docstring (its
    ``Args:`` or ``:param:`` lines describe each argument). A parameter annotated ``kai.ToolContext``
    receives the call's context instead of a model argument.
    """

    def __init__(
        self, function: Callable[..., R], *, name: Optional[str] = None, description: Optional[str] = None
    ) -> None:
        self.function = function
        self.name = name or function.__name__
        doc_description, parameters, param_types, context_param = function_schema(function, _kai.ToolContext)
        self.description = description if description is not None else doc_description
        self.parameters: Dict[str, Any] = parameters
        self.is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)  # type: ignore[arg-type]
        invoker = _Invoker(function, param_types, context_param)
        self.native = _kai.Tool(
            self.name,
            self.description,
            parameters,
            invoker.call_async if self.is_async else invoker.call,
            is_async=self.is_async,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


@overload
def tool(function: Callable[..., R], /) -> FunctionTool[R]: ...


@overload
def tool(
    *, name: Optional[str] = None, description: Optional[str] = None
) -> Callable[[Callable[..., R]], FunctionTool[R]]: ...


def tool(
    function: Optional[Callable[..., R]] = None, /, *, name: Optional[str] = None, description: Optional[str] = None
) -> Union[FunctionTool[R], Callable[[Callable[..., R]], FunctionTool[R]]]:
    """Makes a function a tool: ``@kai.tool`` or ``@kai.tool(name=..., description=...)``."""
    if function is not None:
        return FunctionTool(function, name=name, description=description)

    def decorate(function: Callable[..., R]) -> FunctionTool[R]:
        return FunctionTool(function, name=name, description=description)

    return decorate


ToolLike = Union[FunctionTool[Any], _kai.Tool, Callable[..., Any]]


def native_tool(item: ToolLike) -> _kai.Tool:
    """The native tool for a function, a ``FunctionTool`` or a ``kai.Tool``."""
    if isinstance(item, _kai.Tool):
        return item
    if isinstance(item, FunctionTool):
        return item.native
    if callable(item):
        return FunctionTool(item).native
    raise TypeError(f"{item!r} is not a tool: pass a function, a kai.tool or a kai.Tool")

