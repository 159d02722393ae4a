"""The main job from Python: an agent with a calculator answers on the model KAI_MODEL names.

    KAI_MODEL=$(scripts/setup/llama-server.sh spec) python examples/python/quickstart.py "What is 17 * 23?"
"""

from __future__ import annotations

import ast
import operator
import os
import sys

import kai

OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


@kai.tool
def calculate(expression: str) -> float:
    """Evaluates an arithmetic expression.

    Args:
        expression: The expression, such as 2 * (3 + 4).
    """

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return float(OPERATORS[type(node.op)](value(node.left), value(node.right)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        raise kai.ToolError(f"not an arithmetic expression: {expression}")

    try:
        result = value(ast.parse(expression, mode="eval").body)
    except SyntaxError as error:
        raise kai.ToolError(f"not an arithmetic expression: {expression}") from error
    # 391, not 391.0: the model repeats what it sees.
    return int(result) if result.is_integer() else result


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else "What is 17 * 23?"
    agent = kai.Agent(
        os.environ.get("KAI_MODEL", "openai:gpt-4o-mini"),
        instructions="You are a helpful assistant with a calculator. For arithmetic, call calculate. Answer briefly.",
        tools=[calculate],
        temperature=0.0,
        max_tokens=256,
        max_steps=4,
        answer_on_last_step=True,
        # Small local models: every step is one valid call or the answer, and the first one calculates.
        constrained_steps=True,
        tool_choice="required",
        deadline=300,
    )
    for message in agent.run_sync(question).messages:
        for part in message["content"]:
            if part["type"] == "tool_call":
                print(f"→ {part['name']}({part['arguments']})")
            elif part["type"] == "tool_result":
                print(f"← {part['content']}")
            elif part["type"] == "text" and message["role"] == "assistant":
                print(part["text"])


if __name__ == "__main__":
    main()
