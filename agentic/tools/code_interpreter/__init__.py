"""The built-in ``code_interpreter`` tool: Python in a hardened bubblewrap sandbox.

```python
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig

interpreter = CodeInterpreter(SandboxConfig(timeout=30, pool_size=1))
```

Needs bubblewrap and Debian's ``/usr/bin/python3`` with python3-seccomp (and, for the usual
data work, python3-numpy, python3-pandas, python3-matplotlib). See :mod:`.sandbox` for the
isolation and :class:`SandboxConfig` for the limits.
"""

from __future__ import annotations

from agentic.tools.code_interpreter.config import SandboxConfig
from agentic.tools.code_interpreter.pool import WorkerInfo
from agentic.tools.code_interpreter.result import CellResult
from agentic.tools.code_interpreter.tool import CodeInterpreter

__all__ = ["CellResult", "CodeInterpreter", "SandboxConfig", "WorkerInfo"]
