"""Plain Python functions as tools."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Dict, Generic, Optional, TypeVar, Union, overload

from kai import _kai
from kai._schema import from_json, function_schema, to_json

__all__ = ["FunctionTool", "tool", "native_tool"]

R = TypeVar("R")


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
        doc_description, parameters, self._param_types, self._context_param = function_schema(
            function, _kai.ToolContext
        )
        self.description = description if description is not None else doc_description
        self.parameters: Dict[str, Any] = parameters
        self.is_async = inspect.iscoroutinefunction(function)
        functools.update_wrapper(self, function)  # type: ignore[arg-type]
        self.native = _kai.Tool(
            self.name, self.description, parameters, self._async_call if self.is_async else self._sync_call,
            is_async=self.is_async,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"

    def _arguments(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Dict[str, Any]:
        unexpected = set(arguments) - set(self._param_types)
        if unexpected:
            raise _kai.ToolError(f"unexpected arguments: {', '.join(sorted(unexpected))}")
        try:
            values = {name: from_json(value, self._param_types[name]) for name, value in arguments.items()}
        except (TypeError, ValueError) as error:
            raise _kai.ToolError(f"invalid arguments: {error}") from error
        if self._context_param is not None:
            values[self._context_param] = context
        return values

    def _sync_call(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Any:
        return to_json(self.function(**self._arguments(arguments, context)))

    async def _async_call(self, arguments: Dict[str, Any], context: _kai.ToolContext) -> Any:
        result = self.function(**self._arguments(arguments, context))
        return to_json(await result)  # type: ignore[misc]


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

