"""The peer-bench scenario with LangGraph's prebuilt ReAct agent on langchain-openai's ChatOpenAI."""

from __future__ import annotations

import sys
import warnings

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent

from bench_common import measure


@tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    model = ChatOpenAI(model="mock", base_url=sys.argv[1], api_key="sk-bench", max_retries=0)
    agent = create_react_agent(model, [add], prompt="Use the add tool.")

    def run_once() -> str:
        result = agent.invoke({"messages": [("user", "What is 2 + 3?")]})
        return str(result["messages"][-1].content)

    measure(run_once, sys.argv[2:])
