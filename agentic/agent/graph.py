"""The LangGraph ``StateGraph`` of a turn.

```
START ─► input_shields ─► memory_retrieval ─► inference ─► output_shields ─► END
              │ blocked          (skipped when       ▲  │
              ▼                   not needed)        │  ├─► tool_execution ─┐
             END                                     │  └─► client_tools ◄──┤ (interrupt)
                                                     └──────────────────────┘
```

Every node records one step; conditional edges skip shields and retrieval the agent does not
have, and end the turn when a node completed it.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from agentic.agent import steps
from agentic.agent.core import AgentCore
from agentic.agent.steps import TurnContext, TurnState
from agentic.agent.types import TurnStatus

__all__ = ["NODES", "build_graph"]

NODES = (
    "input_shields",
    "memory_retrieval",
    "inference",
    "tool_execution",
    "client_tools",
    "output_shields",
)


class _Routes:
    """The conditional edges: where a turn goes after each node.

    Async on purpose: LangGraph runs sync routing functions in a thread pool, a thread hop
    per step."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def _needs_memory(self, state: TurnState) -> bool:
        return bool(self.core.retrievers) or bool(state["turn"].documents)

    async def start(self, state: TurnState) -> str:
        if self.core.input_shields:
            return "input_shields"
        return "memory_retrieval" if self._needs_memory(state) else "inference"

    async def after_input_shields(self, state: TurnState) -> str:
        if state["turn"].status is TurnStatus.completed:
            return END
        return "memory_retrieval" if self._needs_memory(state) else "inference"

    async def after_inference(self, state: TurnState) -> str:
        if state["turn"].status is TurnStatus.completed:
            return END
        if state.get("reformat"):
            return "inference"
        pending = state.get("pending") or []
        if state.get("unparsable") is not None:
            return "tool_execution"
        if any(c.tool_name not in self.core.client_tools for c in pending):
            return "tool_execution"
        return "client_tools" if pending else "output_shields"

    @staticmethod
    async def after_tools(state: TurnState) -> str:
        return "client_tools" if state.get("pending") else "inference"


def build_graph(core: AgentCore) -> StateGraph[TurnState, TurnContext, Any, Any]:
    """The turn graph of one agent (compile it with a checkpointer and store)."""
    routes = _Routes(core)
    graph = StateGraph(TurnState, context_schema=TurnContext)
    graph.add_node("input_shields", steps.input_shields)
    graph.add_node("memory_retrieval", steps.memory_retrieval)
    graph.add_node("inference", steps.inference)
    graph.add_node("tool_execution", steps.tool_execution)
    graph.add_node("client_tools", steps.client_tools)
    graph.add_node("output_shields", steps.output_shields)
    graph.add_conditional_edges(
        START, routes.start, ["input_shields", "memory_retrieval", "inference"]
    )
    graph.add_conditional_edges(
        "input_shields", routes.after_input_shields, ["memory_retrieval", "inference", END]
    )
    graph.add_edge("memory_retrieval", "inference")
    graph.add_conditional_edges(
        "inference",
        routes.after_inference,
        ["inference", "tool_execution", "client_tools", "output_shields", END],
    )
    graph.add_conditional_edges("tool_execution", routes.after_tools, ["client_tools", "inference"])
    graph.add_edge("client_tools", "inference")
    graph.add_edge("output_shields", END)
    return graph
