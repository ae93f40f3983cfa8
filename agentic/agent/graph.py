"""The LangGraph ``StateGraph`` of a turn.

```
START ─► memory_retrieval ─► inference ─► END  (the answer, or a shield's refusal)
  │       (when needed)        ▲  ▲  │
  └────────────────────────────┘  │  ├─► tool_execution ─┐
                                  │  └─► client_tools ◄──┤ (interrupt)
                                  └──────────────────────┘
```

Every node records its steps; conditional edges skip retrieval when the agent has nothing to
retrieve from, and end the turn when a node completed it. Shields are no nodes of their own:
input shields run concurrently with the turn's first inference and output shields check its
text before release, both inside the inference node (a refusal ends the turn there); data and
code shields run inside tool_execution.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.graph import END, START, StateGraph

from agentic.agent import steps
from agentic.agent.core import AgentCore
from agentic.agent.steps import TurnContext, TurnState
from agentic.agent.types import TurnStatus

__all__ = ["NODES", "build_graph"]

NODES = ("memory_retrieval", "inference", "tool_execution", "client_tools")


class _Routes:
    """The conditional edges: where a turn goes after each node (async: they run in the loop,
    see :class:`_Route`)."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def _needs_memory(self, state: TurnState) -> bool:
        return (
            bool(self.core.retrievers)
            or bool(state["turn"].documents)
            or bool(state.get("session_bank"))
        )

    async def start(self, state: TurnState) -> str:
        return "memory_retrieval" if self._needs_memory(state) else "inference"

    async def after_inference(self, state: TurnState) -> str:
        if state["turn"].status is TurnStatus.completed:
            return END
        if state.get("reformat"):
            return "inference"
        pending = state.get("pending") or []
        if state.get("unparsable") is not None:
            return "tool_execution"
        if any(not self.core.waits_for_client(c) for c in pending):
            return "tool_execution"
        return "client_tools" if pending else END

    @staticmethod
    async def after_tools(state: TurnState) -> str:
        return "client_tools" if state.get("pending") else "inference"


class _Route(Runnable[TurnState, str]):
    """A conditional edge's routing function as LangGraph calls it, without a trace run.

    LangGraph wraps a plain routing function in a traced runnable: a callback-manager setup, a
    chain run and a task per call, about 0.1 ms a step for a decision that reads two fields.
    The nodes themselves stay traced by LangGraph as before."""

    def __init__(self, route: Callable[[TurnState], Awaitable[str]]) -> None:
        self.route = route
        self.name = route.__name__

    def invoke(self, input: TurnState, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        raise TypeError("the turn graph runs on asyncio only: use ainvoke / astream")

    async def ainvoke(
        self, input: TurnState, config: RunnableConfig | None = None, **kwargs: Any
    ) -> str:
        return await self.route(input)


def build_graph(core: AgentCore) -> StateGraph[TurnState, TurnContext, Any, Any]:
    """The turn graph of one agent (compile it with a checkpointer and store)."""
    routes = _Routes(core)
    graph = StateGraph(TurnState, context_schema=TurnContext)
    graph.add_node("memory_retrieval", steps.memory_retrieval)
    graph.add_node("inference", steps.inference)
    graph.add_node("tool_execution", steps.tool_execution)
    graph.add_node("client_tools", steps.client_tools)
    graph.add_conditional_edges(START, _Route(routes.start), ["memory_retrieval", "inference"])
    graph.add_edge("memory_retrieval", "inference")
    graph.add_conditional_edges(
        "inference",
        _Route(routes.after_inference),
        ["inference", "tool_execution", "client_tools", END],
    )
    graph.add_conditional_edges(
        "tool_execution", _Route(routes.after_tools), ["client_tools", "inference"]
    )
    graph.add_edge("client_tools", "inference")
    return graph
