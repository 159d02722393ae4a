"""Structured output into dataclasses, Pydantic models and other types; argument types of tools."""

from __future__ import annotations

import dataclasses
import enum
from typing import Dict, List, Literal, Optional

import pydantic
import pytest

import kai
from kai.testing import ScriptedModel, tool_call
from conftest import run, tool_results


@dataclasses.dataclass
class City:
    """A city and its population."""

    name: str
    population: int
    country: Optional[str] = None


class Weather(pydantic.BaseModel):
    city: str
    celsius: float
    kind: Literal["sunny", "rain", "snow"]


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


def test_output_into_a_dataclass() -> None:
    model = ScriptedModel([tool_call("final_result", name="Oslo", population=709000)], json_schema=False)
    agent = kai.Agent(model, output_type=City)
    result = agent.run_sync("Largest city of Norway?")
    assert result.output == City("Oslo", 709000)
    schema = model.requests()[0]["tools"][0]["parameters"]
    assert schema["required"] == ["name", "population"]


def test_output_into_a_pydantic_model_through_the_json_schema_format() -> None:
    model = ScriptedModel(['{"city": "Bergen", "celsius": 11, "kind": "rain"}'])
    agent = kai.Agent(model, output_type=Weather)
    result = run(agent.run("Weather in Bergen?"))
    assert result.output == Weather(city="Bergen", celsius=11.0, kind="rain")
    assert isinstance(result.output.celsius, float)
    assert model.requests()[0]["response_format"]["schema"]["properties"]["kind"]["enum"] == ["sunny", "rain", "snow"]


def test_an_answer_that_breaks_the_schema_is_repaired_then_refused() -> None:
    model = ScriptedModel(['{"city": "Bergen"}', '{"city": "Bergen", "celsius": 11, "kind": "rain"}'])
    assert kai.Agent(model, output_type=Weather).run_sync("Weather?").output.kind == "rain"

    model = ScriptedModel(['{"city": 1}'], repeat=True)
    with pytest.raises(kai.InvalidOutputError) as raised:
        kai.Agent(model, output_type=Weather, max_repairs=1).run_sync("Weather?")
    assert raised.value.attempts == 2


def test_output_of_a_type_that_is_not_an_object_is_wrapped() -> None:
    model = ScriptedModel(['{"value": [3, 1, 2]}'])
    assert kai.Agent(model, output_type=List[int]).run_sync("Three numbers?").output == [3, 1, 2]
    model = ScriptedModel(['{"value": "fahrenheit"}'])
    assert kai.Agent(model, output_type=Unit).run_sync("Unit?").output is Unit.FAHRENHEIT


def test_tool_arguments_arrive_as_the_hinted_types() -> None:
    received = []

    def report(city: City, weather: Weather, unit: Unit, tags: Dict[str, int], days: Optional[List[int]] = None) -> str:
        """Files a weather report."""
        received.append((city, weather, unit, tags, days))
        return "filed"

    arguments = {
        "city": {"name": "Oslo", "population": 709000},
        "weather": {"city": "Oslo", "celsius": -3, "kind": "snow"},
        "unit": "celsius",
        "tags": {"a": 1},
    }
    model = ScriptedModel([tool_call("report", **arguments), "done"])
    kai.Agent(model, tools=[report]).run_sync("report")
    assert received == [
        (City("Oslo", 709000), Weather(city="Oslo", celsius=-3.0, kind="snow"), Unit.CELSIUS, {"a": 1}, None)
    ]
    parameters = model.requests()[0]["tools"][0]["parameters"]
    assert parameters["properties"]["unit"] == {"enum": ["celsius", "fahrenheit"]}
    assert parameters["properties"]["weather"]["properties"]["kind"]["enum"] == ["sunny", "rain", "snow"]
    assert parameters["required"] == ["city", "weather", "unit", "tags"]


def test_tool_results_of_rich_types_are_sent_as_json() -> None:
    def find(name: str) -> City:
        """Finds a city."""
        return City(name, 1)

    async def forecast(city: str) -> Weather:
        """Forecasts."""
        return Weather(city=city, celsius=20, kind="sunny")

    model = ScriptedModel([kai.testing.tool_calls([("find", {"name": "Oslo"}), ("forecast", {"city": "Oslo"})]), "ok"])
    kai.Agent(model, tools=[find, forecast]).run_sync("go")
    contents = [result["content"] for result in tool_results(model)]
    # Results are listed as the calls finish.
    assert sorted(contents) == [
        '{"celsius":20.0,"city":"Oslo","kind":"sunny"}',
        '{"country":null,"name":"Oslo","population":1}',
    ]


def test_types_that_json_cannot_describe_are_refused_when_the_tool_is_made() -> None:
    def bad(when: complex) -> str:
        """Takes a complex number."""
        return str(when)

    with pytest.raises(TypeError):
        kai.tool(bad)

    def star(*names: str) -> str:
        """Takes any names."""
        return ",".join(names)

    with pytest.raises(TypeError):
        kai.tool(star)
