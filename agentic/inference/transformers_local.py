"""In-process inference with Hugging Face transformers: any Llama 3.x checkpoint, CPU by default.

We render the prompt and tokenize it ourselves (every Llama 3.x model shares the tokenizer), so a
checkpoint needs its config and weights only. ``model.generate`` runs in a worker thread; each
new token is decoded incrementally there and handed to the event loop through a queue, so the
loop never blocks and multi-byte characters split over tokens come out whole.

Needs the ``local`` extra (torch, transformers). Text models only: a vision checkpoint (Mllama)
needs image preprocessing this backend does not do; serve those with vLLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentic.errors import (
    AgenticError,
    ConfigError,
    ContextLengthError,
    InferenceError,
    MissingDependencyError,
    UnknownModelError,
    UnsupportedFeatureError,
)
from agentic.inference.base import Completion, InferenceRequest, TextDelta, Timings
from agentic.llama.models import ModelSpec, resolve_model
from agentic.llama.tokenizer import Tokenizer, get_tokenizer
from agentic.llama.tokens import END_OF_MESSAGE, SPECIAL_TOKEN_IDS
from agentic.types import ImageContent, SamplingParams, StopReason, Usage

if TYPE_CHECKING:
    import torch

__all__ = ["TokenLogitsProcessor", "TransformersLocal", "logit_bias"]

TokenLogitsProcessor = Callable[[Sequence[int], "torch.Tensor"], "torch.Tensor"]
"""``(generated_ids, logits) -> logits``: reshape the next-token distribution of one request.

``generated_ids`` are the tokens this request produced so far (prompt excluded; a live view, copy
it to keep it) and ``logits`` the 1-D float tensor over the vocabulary; edit it in place or return
a new one. Processors run before temperature / top-k / top-p, like vLLM's.
"""

_PAD_ID = SPECIAL_TOKEN_IDS["<|finetune_right_pad_id|>"]
_THREAD_NAME = "agentic-transformers-generate"


def _require() -> None:
    """Check that torch and transformers import; :class:`MissingDependencyError` otherwise."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("transformers", "local") from exc


def logit_bias(bias: Mapping[int, float]) -> TokenLogitsProcessor:
    """Add ``bias[token]`` to that token's logit at every step (OpenAI's ``logit_bias``).

    -100 practically bans a token, +100 practically forces it.
    """
    _require()
    import torch

    vocab = get_tokenizer().vocab_size
    if bad := [t for t in bias if not 0 <= t < vocab]:
        raise ConfigError(
            f"logit_bias: token ids {bad} are outside the vocabulary (0..{vocab - 1})"
        )
    ids = torch.tensor(list(bias), dtype=torch.long)
    values = torch.tensor(list(bias.values()), dtype=torch.float32)

    def process(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        logits[ids.to(logits.device)] += values.to(logits.device, logits.dtype)
        return logits

    return process


def _penalties(presence: float, frequency: float) -> TokenLogitsProcessor:
    """OpenAI presence / frequency penalties over the generated tokens."""
    import torch

    def process(generated: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if generated:
            seen = torch.tensor(generated, device=logits.device)
            counts = torch.bincount(seen, minlength=logits.shape[-1])[: logits.shape[-1]]
            logits -= frequency * counts + presence * (counts > 0)
        return logits

    return process


class _StopStrings:
    """Holds back text that could begin a stop string; finds the first complete one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""

    def push(self, text: str) -> tuple[str, bool]:
        """Text that is safe to emit, and whether a stop string was reached (it is dropped)."""
        if not self._stops:
            return text, False
        self._buffer += text
        hits = [i for s in self._stops if (i := self._buffer.find(s)) >= 0]
        if hits:
            out, self._buffer = self._buffer[: min(hits)], ""
            return out, True
        cut = max(len(self._buffer) - self._hold, 0)
        out, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return out, False

    def flush(self) -> str:
        out, self._buffer = self._buffer, ""
        return out


@dataclass(frozen=True)
class _Finished:
    stop_reason: StopReason
    completion_tokens: int


_Event = str | _Finished | BaseException


class _Generation:
    """One request's state in the worker thread: sees each token, decodes it, decides to stop."""

    def __init__(
        self,
        prompt_ids: list[int],
        sampling: SamplingParams,
        max_new_tokens: int,
        tokenizer: Tokenizer,
        emit: Callable[[_Event], object],
    ) -> None:
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.max_new_tokens = max_new_tokens
        self.generated: list[int] = []
        self.cancelled = threading.Event()
        self.stop_reason: StopReason | None = None
        self._tokenizer = tokenizer
        self._decoder = tokenizer.stream_decoder()
        self._stops = _StopStrings(sampling.stop)
        self._emit = emit

    def send(self, event: _Event) -> None:
        """Hand an event to the event loop; a closed loop means nobody listens any more."""
        try:
            self._emit(event)
        except RuntimeError:  # the loop is closed
            self.cancelled.set()

    def observe(self, input_ids: torch.Tensor) -> bool:
        """Take the tokens generate() appended since the last call; True to stop now."""
        start = len(self.prompt_ids) + len(self.generated)
        for token in input_ids[0, start:].tolist():
            self.generated.append(token)
            if self._take(token):
                return True
        return self.cancelled.is_set()

    def _take(self, token: int) -> bool:
        if token in self._tokenizer.stop_ids:
            self._send_text(self._stops.flush() + self._decoder.flush())
            self._send_text(self._tokenizer.decode([token]))
            self.stop_reason = (
                StopReason.end_of_message
                if token == SPECIAL_TOKEN_IDS[END_OF_MESSAGE]
                else StopReason.end_of_turn
            )
            return True
        text, matched = self._stops.push(self._decoder.feed(token))
        self._send_text(text)
        if matched:
            self.stop_reason = StopReason.end_of_turn
        return matched

    def _send_text(self, text: str) -> None:
        if text:
            self.send(text)

    def finish(self) -> None:
        """Flush held-back text and report the outcome (out of tokens unless a stop came)."""
        if self.stop_reason is None:
            self._send_text(self._stops.flush() + self._decoder.flush())
        self.send(_Finished(self.stop_reason or StopReason.out_of_tokens, len(self.generated)))


class _StopCriterion:
    """A transformers stopping criterion that asks the request whether to stop."""

    def __init__(self, generation: _Generation) -> None:
        self._generation = generation

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        stop = self._generation.observe(input_ids)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class _ProcessorChain:
    """A transformers logits processor running our per-request processors on row 0."""

    def __init__(self, generation: _Generation, processors: Sequence[TokenLogitsProcessor]) -> None:
        self._generation = generation
        self._processors = processors

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        row = scores[0]
        for process in self._processors:
            row = process(self._generation.generated, row)
        return row.unsqueeze(0)


@dataclass(frozen=True)
class _Plan:
    prompt_ids: list[int]
    max_new_tokens: int


def _check_request(request: InferenceRequest) -> None:
    """Refuse what this backend cannot do, before any work."""
    if request.response_format is not None:
        raise UnsupportedFeatureError(
            "TransformersLocal has no guided decoding: response_format needs the vLLM backend"
        )
    if request.images:
        raise UnsupportedFeatureError(
            "TransformersLocal runs text models only; send a prompt with images to a vision "
            "model served by vLLM"
        )
    for message in request.messages:
        content = message.content
        if not isinstance(content, str) and any(isinstance(p, ImageContent) for p in content):
            raise UnsupportedFeatureError(
                "TransformersLocal runs text models only; send images to a Llama 3.2 Vision "
                "model served by vLLM"
            )


class TransformersLocal:
    """An :class:`~agentic.inference.base.InferenceBackend` running one checkpoint in-process.

    ``model`` is a local checkpoint directory (loaded with ``local_files_only``) or a Hugging Face
    id. ``model_spec`` says how to render prompts (default: ``model`` if the capability table
    knows it, else each request's ``model``). ``device`` defaults to CUDA when available, else
    CPU; ``dtype`` to float32 on CPU and the checkpoint's own elsewhere. ``max_context`` caps the
    context (default: the checkpoint's ``max_position_embeddings`` and the spec's context).
    ``logits_processors`` reshape every request's next-token distribution.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        model_spec: str | ModelSpec | None = None,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        max_context: int | None = None,
        logits_processors: Sequence[TokenLogitsProcessor] = (),
    ) -> None:
        _require()
        import torch

        if max_context is not None and max_context < 1:
            raise ConfigError(f"max_context must be a positive number of tokens, not {max_context}")
        self.model = model
        self.model_spec = resolve_model(model_spec) if model_spec is not None else _known(model)
        self.device: str = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._dtype = (
            dtype if dtype is not None else torch.float32 if self.device == "cpu" else "auto"
        )
        self._max_context = max_context
        self._processors = tuple(logits_processors)
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._model: Any = None

    def __repr__(self) -> str:
        return f"TransformersLocal({str(self.model)!r}, device={self.device!r})"

    def load(self) -> Any:
        """Load the model once (blocking; :meth:`stream` does it in a thread) and return it."""
        with self._load_lock:
            if self._model is None:
                self._model = self._load_model()
        return self._model

    @property
    def context_length(self) -> int:
        """Prompt plus completion tokens the model takes (loads the model)."""
        limits = [int(getattr(self.load().config, "max_position_embeddings", 0))]
        if self._max_context is not None:
            limits.append(self._max_context)
        if self.model_spec is not None:
            limits.append(self.model_spec.context_length)
        return min(n for n in limits if n > 0)

    async def count_tokens(self, text: str, *, model: str = "") -> int:
        """How many tokens this engine makes of ``text`` (as is, no ``<|begin_of_text|>``
        added): agents budget their prompts with it. ``model`` is ignored (one model here)."""
        return await asyncio.to_thread(get_tokenizer().count, text)

    def _load_model(self) -> Any:
        import transformers

        path = Path(self.model).expanduser()
        local = path.is_dir()
        if not local and (
            isinstance(self.model, Path) or str(self.model).startswith((".", "/", "~"))
        ):
            raise ConfigError(f"no model checkpoint directory at {str(path)!r}")
        try:
            # Any: transformers types .to() through a wrapper mypy cannot call with a device string
            model: Any = transformers.AutoModelForCausalLM.from_pretrained(
                str(path) if local else str(self.model), dtype=self._dtype, local_files_only=local
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load model {str(self.model)!r}: {exc}") from exc
        vocab = int(getattr(model.config, "vocab_size", 0))
        if vocab < get_tokenizer().vocab_size:
            raise ConfigError(
                f"{str(self.model)!r} has a vocabulary of {vocab} tokens; TransformersLocal runs "
                f"Llama 3.x checkpoints ({get_tokenizer().vocab_size} tokens)"
            )
        return model.to(self.device).eval()

    async def stream(self, request: InferenceRequest) -> AsyncIterator[TextDelta | Completion]:
        """Generate for ``request``: text deltas as tokens come, then one :class:`Completion`."""
        started = time.perf_counter()
        _check_request(request)
        plan = await asyncio.to_thread(self._plan, request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Event] = asyncio.Queue()
        job = _Generation(
            plan.prompt_ids,
            request.sampling,
            plan.max_new_tokens,
            get_tokenizer(),
            lambda event: loop.call_soon_threadsafe(queue.put_nowait, event),
        )
        threading.Thread(target=self._work, args=(job,), name=_THREAD_NAME, daemon=True).start()
        first: float | None = None
        parts: list[str] = []
        try:
            while not isinstance(event := await queue.get(), _Finished):
                if not isinstance(event, str):
                    raise _as_inference_error(event)
                first = first if first is not None else time.perf_counter() - started
                parts.append(event)
                yield TextDelta(event)
        finally:
            job.cancelled.set()
        yield Completion(
            text="".join(parts),
            stop_reason=event.stop_reason,
            usage=Usage(
                prompt_tokens=len(plan.prompt_ids), completion_tokens=event.completion_tokens
            ),
            timings=Timings(time_to_first_token=first, total=time.perf_counter() - started),
        )

    def _plan(self, request: InferenceRequest) -> _Plan:
        """Render and tokenize the prompt and check it fits (runs in a worker thread)."""
        prompt = request.prompt if request.prompt is not None else self._render(request)
        ids = get_tokenizer().encode(prompt)
        if not ids:
            raise ConfigError("the prompt is empty: give messages or a non-empty prompt")
        context = self.context_length
        wanted = request.sampling.max_tokens
        if len(ids) + (wanted or 1) > context:
            raise ContextLengthError(
                f"the prompt has {len(ids)} tokens"
                + (f" and max_tokens is {wanted}" if wanted else "")
                + f"; the model's context is {context} tokens",
                prompt_tokens=len(ids),
                max_model_len=context,
            )
        return _Plan(ids, wanted or context - len(ids))

    def _render(self, request: InferenceRequest) -> str:
        from agentic.llama.prompt import render_prompt

        return render_prompt(
            request.messages,
            model=self.model_spec or request.model,
            tools=request.tools,
            tool_prompt_format=request.tool_prompt_format,
            tool_choice=request.tool_choice,
            today=request.today,
        )

    def _work(self, job: _Generation) -> None:
        """Worker thread body: one generation at a time per model; errors go to the consumer."""
        try:
            model = self.load()
            with self._generate_lock:
                if not job.cancelled.is_set():
                    self._generate(model, job)
            job.finish()
        except Exception as exc:  # the thread's boundary: the consumer re-raises it
            job.send(exc)

    def _generate(self, model: Any, job: _Generation) -> None:
        import torch
        import transformers

        input_ids = torch.tensor([job.prompt_ids], dtype=torch.long, device=model.device)
        processors = list(self._processors)
        sampling = job.sampling
        if sampling.presence_penalty or sampling.frequency_penalty:
            processors.append(
                _penalties(sampling.presence_penalty or 0.0, sampling.frequency_penalty or 0.0)
            )
        chain = [_ProcessorChain(job, processors)] if processors else []
        with self._seeded(sampling.seed):
            model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=_generation_config(sampling, job.max_new_tokens),
                logits_processor=transformers.LogitsProcessorList(chain),
                stopping_criteria=transformers.StoppingCriteriaList([_StopCriterion(job)]),
            )

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """Seed the sampler for one generation without disturbing anyone else's RNG state."""
        import torch

        if seed is None:
            yield
            return
        devices: list[int] | None = None if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield


def _generation_config(sampling: SamplingParams, max_new: int) -> Any:
    """A complete GenerationConfig, so the checkpoint's own sampling defaults never leak in."""
    import transformers

    stop_ids = sorted(get_tokenizer().stop_ids)
    sample = sampling.temperature > 0
    return transformers.GenerationConfig(  # type: ignore[no-untyped-call]  # unannotated __init__
        max_new_tokens=max_new,
        do_sample=sample,
        temperature=sampling.temperature if sample else 1.0,
        top_p=sampling.top_p if sample else 1.0,
        top_k=(sampling.top_k or 0) if sample else 50,  # 50: transformers' (unused) default
        repetition_penalty=sampling.repetition_penalty or 1.0,
        eos_token_id=stop_ids,
        pad_token_id=_PAD_ID,
        bos_token_id=SPECIAL_TOKEN_IDS["<|begin_of_text|>"],
    )


def _known(model: str | Path) -> ModelSpec | None:
    """The table's spec for a Hugging Face id, or None for a path or an unknown name."""
    try:
        return resolve_model(str(model))
    except UnknownModelError:
        return None


def _as_inference_error(exc: BaseException) -> BaseException:
    """Our own errors pass through; anything else from torch/transformers is an InferenceError."""
    if isinstance(exc, AgenticError):
        return exc
    error = InferenceError(f"local generation failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
