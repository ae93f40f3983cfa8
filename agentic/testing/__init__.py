"""Test doubles that ship with the library: a scripted vLLM server on loopback and a tiny Llama.

```python
from agentic.testing import Reply, VLLMTestServer

with VLLMTestServer(["Hello!<|eot_id|>", Reply("Hi", token_delay=0.01)]) as server:
    ...  # point a client at server.base_url; inspect server.requests afterwards
```
"""

from agentic.testing.tiny_llama import build_tiny_llama, scripted_tokens
from agentic.testing.vllm import RecordedRequest, Reply, Responder, VLLMTestServer

__all__ = [
    "RecordedRequest",
    "Reply",
    "Responder",
    "VLLMTestServer",
    "build_tiny_llama",
    "scripted_tokens",
]
