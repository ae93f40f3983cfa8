"""Tools: the :class:`Tool` protocol, the ``@tool`` decorator and the executor that runs calls.

```python
from agentic.tools import ToolContext, tool

@tool
async def get_weather(ctx: ToolContext[MyDeps], city: str, days: int = 1) -> str:
    \"\"\"Get the weather forecast.

    Args:
        city: The city name.
        days: How many days ahead.
    \"\"\"
    return await ctx.deps.weather.forecast(city, days)
```
"""

from __future__ import annotations

from agentic.errors import SearchError, ToolArgumentsError, ToolError
from agentic.tools.base import (
    Tool,
    ToolContext,
    ToolErrorKind,
    ToolLifecycle,
    ToolOutput,
    ToolResponse,
    ToolResult,
    ToolRetry,
)
from agentic.tools.brave import BraveSearch
from agentic.tools.code_interpreter import CellResult, CodeInterpreter, SandboxConfig, WorkerInfo
from agentic.tools.executor import ToolExecutor, unparsable_response
from agentic.tools.function import FunctionTool, tool
from agentic.tools.wolfram import WolframAlpha

__all__ = [
    "BraveSearch",
    "CellResult",
    "CodeInterpreter",
    "FunctionTool",
    "SandboxConfig",
    "SearchError",
    "Tool",
    "ToolArgumentsError",
    "ToolContext",
    "ToolError",
    "ToolErrorKind",
    "ToolExecutor",
    "ToolLifecycle",
    "ToolOutput",
    "ToolResponse",
    "ToolResult",
    "ToolRetry",
    "WolframAlpha",
    "WorkerInfo",
    "tool",
    "unparsable_response",
]
