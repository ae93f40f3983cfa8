"""Data types shared by every layer: content, messages, tool definitions and calls, sampling.

Messages are a discriminated union on ``role``; content parts on ``type``. Every function that
takes messages also takes plain dicts in the OpenAI chat shape; :func:`as_message` converts them.
"""

from __future__ import annotations

import base64
import difflib
import json
import mimetypes
import typing
import uuid
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, TypeAlias

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from agentic.errors import ConfigError

__all__ = [
    "Artifact",
    "AssistantMessage",
    "BuiltinTool",
    "Content",
    "ContentPart",
    "Document",
    "ImageContent",
    "Message",
    "SamplingParams",
    "StopReason",
    "SystemMessage",
    "TextContent",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "ToolMessage",
    "ToolParam",
    "ToolPromptFormat",
    "Usage",
    "UserMessage",
    "as_message",
    "as_messages",
    "content_text",
    "json_schema_of",
]


class StopReason(StrEnum):
    """Why generation stopped: ``<|eot_id|>``, ``<|eom_id|>`` (run the tool call), max tokens."""

    end_of_turn = "end_of_turn"
    end_of_message = "end_of_message"
    out_of_tokens = "out_of_tokens"


class ToolPromptFormat(StrEnum):
    """How custom tools are described to the model and how it calls them."""

    json = "json"
    function_tag = "function_tag"
    python_list = "python_list"


class BuiltinTool(StrEnum):
    """Tools Llama 3.1 was trained to call with ``name.call(query=...)`` or raw code."""

    brave_search = "brave_search"
    wolfram_alpha = "wolfram_alpha"
    photogen = "photogen"
    code_interpreter = "code_interpreter"


BUILTIN_TOOL_NAMES = frozenset(t.value for t in BuiltinTool)

ToolChoice: TypeAlias = str
"""``"auto"``, ``"required"``, ``"none"``, or the name of one tool the model must call."""


class _CompactRepr(BaseModel):
    """``repr()`` without the fields that still have their default value, so a printed turn
    shows what happened rather than every ``None``, ``False`` and ``[]``."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        fields = type(self).model_fields
        for name, value in super().__repr_args__():
            field = fields.get(name) if name is not None else None
            if field is None or not _is_default(field, value):
                yield name, value


def _is_default(field: FieldInfo, value: Any) -> bool:
    if field.is_required() or field.default_factory_takes_validated_data:
        return False
    return bool(value == field.get_default(call_default_factory=True))


class _Frozen(_CompactRepr):
    model_config = ConfigDict(frozen=True, extra="forbid")


if TYPE_CHECKING:  # type checkers keep the fields' own signature

    class _Settings(_CompactRepr):
        _what: ClassVar[str]

else:

    class _SettingsMeta(type(BaseModel)):
        """Makes a mistake in constructing settings a :class:`ConfigError`. Only a direct
        call (``SamplingParams(...)``) goes through here; nested settings validated inside
        another model leave pydantic's error to it, which names the field's whole path."""

        def __call__(cls, /, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().__call__(*args, **kwargs)
            except ValidationError as exc:
                message = validation_message(exc, cls)
                raise ConfigError(f"invalid {cls._what}: {message}") from exc

    class _Settings(_CompactRepr, metaclass=_SettingsMeta):
        """Settings a user writes: a mistake is a :class:`ConfigError` naming each field
        (and the setting a misspelt one meant), as in a YAML config, not pydantic's
        ``ValidationError``."""

        _what: ClassVar[str] = "settings"


def validation_message(exc: ValidationError, root: type[BaseModel]) -> str:
    """Pydantic's errors as ``field.path: message``, ``;``-separated; a misspelt setting says
    which one of ``root``'s (or its nested settings') was meant."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "config"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting" + _did_you_mean(root, err["loc"])
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def _did_you_mean(root: type[BaseModel], loc: Iterable[int | str]) -> str:
    """``, did you mean 'x'?`` for a misspelt field at ``loc``, else ``''``."""
    *path, last = loc
    model: Any = root
    for key in path:
        if isinstance(key, int):
            continue  # an item of a list field: same model
        field = model.model_fields.get(key) if _is_model(model) else None
        model = None if field is None else _model_in(field.annotation)
    if not _is_model(model):
        return ""
    close = difflib.get_close_matches(str(last), list(model.model_fields), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The pydantic model a field holds (itself, or the item type of a list of them)."""
    if _is_model(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if (found := _model_in(arg)) is not None:
            return found
    return None


class TextContent(_Frozen):
    type: Literal["text"] = "text"
    text: str


_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
)


def _sniff_mime(data: bytes) -> str:
    for magic, mime in _IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    raise ConfigError("image bytes are not PNG, JPEG, GIF, WebP or BMP; pass mime= explicitly")


class ImageContent(_Frozen):
    """An image, kept as a URL: ``data:`` URLs for local bytes/files, or http(s) URLs.

    Build with :meth:`from_path`, :meth:`from_bytes` or :meth:`from_url`, or validate a dict with
    one of ``url``, ``path`` or ``data`` (bytes or base64 text).
    """

    type: Literal["image"] = "image"
    url: str

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        value = dict(value)
        if "path" in value:
            return {"type": "image", "url": _data_url_from_path(Path(value.pop("path")))}
        if "data" in value:
            data = value.pop("data")
            raw = data if isinstance(data, bytes) else base64.b64decode(data)
            return {"type": "image", "url": _data_url(raw, value.pop("mime", None))}
        if isinstance(value.get("image_url"), Mapping):  # OpenAI part shape
            return {"type": "image", "url": value["image_url"]["url"]}
        value["type"] = "image"
        return value

    @model_validator(mode="after")
    def _check_url(self) -> ImageContent:
        if not self.url.startswith(("data:image/", "http://", "https://")):
            raise ValueError("image url must be a data:image/... URL or an http(s) URL")
        return self

    @classmethod
    def from_path(cls, path: str | Path) -> ImageContent:
        return cls(url=_data_url_from_path(Path(path)))

    @classmethod
    def from_bytes(cls, data: bytes, mime: str | None = None) -> ImageContent:
        return cls(url=_data_url(data, mime))

    @classmethod
    def from_url(cls, url: str) -> ImageContent:
        return cls(url=url)

    @property
    def is_data_url(self) -> bool:
        return self.url.startswith("data:")

    def data(self) -> bytes:
        """The image bytes of a data URL (http URLs must be fetched by the caller)."""
        if not self.is_data_url:
            raise ConfigError(f"image {self.url!r} is a remote URL; its bytes are not inline")
        return base64.b64decode(self.url.split(",", 1)[1])


def _data_url(data: bytes, mime: str | None) -> str:
    mime = mime or _sniff_mime(data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _data_url_from_path(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read image {str(path)!r}: {exc.strerror}") from exc
    guessed, _ = mimetypes.guess_type(path.name)
    return _data_url(data, guessed if guessed and guessed.startswith("image/") else None)


ContentPart = Annotated[TextContent | ImageContent, Field(discriminator="type")]
Content: TypeAlias = str | list[ContentPart]


def content_text(content: Content) -> str:
    """The text of a content value, parts concatenated with no separator (images dropped)."""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextContent))


class ToolCall(_Frozen):
    """A call the model made. Built-in tools keep their Llama name (``brave_search``...)."""

    call_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    tool_name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def builtin(self) -> BuiltinTool | None:
        return BuiltinTool(self.tool_name) if self.tool_name in BUILTIN_TOOL_NAMES else None

    def arguments_json(self) -> str:
        return json.dumps(self.arguments)


class SystemMessage(_Frozen):
    role: Literal["system"] = "system"
    content: Content


class UserMessage(_Frozen):
    role: Literal["user"] = "user"
    content: Content
    context: str | None = None
    """Retrieved context (RAG); rendered after the content, separated by a blank line."""


class AssistantMessage(_Frozen):
    role: Literal["assistant"] = "assistant"
    content: Content = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    stop_reason: StopReason | None = None


class ToolMessage(_Frozen):
    """A tool's result; rendered with the Llama role ``ipython``."""

    role: Literal["tool"] = "tool"
    call_id: str
    tool_name: str | None = None
    content: Content


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]
_MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)
_MESSAGE_TYPES = (SystemMessage, UserMessage, AssistantMessage, ToolMessage)


def _openai_tool_call(raw: Mapping[str, Any]) -> dict[str, Any]:
    if "function" not in raw:
        return dict(raw)
    fn = raw["function"]
    args = fn.get("arguments") or {}
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    out: dict[str, Any] = {"tool_name": fn["name"], "arguments": args}
    if raw.get("id"):
        out["call_id"] = raw["id"]
    return out


def _openai_content(content: Any) -> Any:
    if content is None:
        return ""
    if isinstance(content, list):
        return [
            {"type": "image", "image_url": p["image_url"]}
            if isinstance(p, Mapping) and p.get("type") == "image_url"
            else p
            for p in content
        ]
    return content


def _normalize_dict(raw: Mapping[str, Any]) -> dict[str, Any]:
    data = dict(raw)
    role = data.get("role")
    if role == "ipython":
        data["role"] = role = "tool"
    if "content" in data:
        data["content"] = _openai_content(data["content"])
    if role == "tool" and "tool_call_id" in data:
        data["call_id"] = data.pop("tool_call_id")
    if role == "tool" and "name" in data:
        data["tool_name"] = data.pop("name")
    if role == "assistant" and data.get("tool_calls"):
        data["tool_calls"] = [_openai_tool_call(tc) for tc in data["tool_calls"]]
    elif role == "assistant" and "tool_calls" in data:
        data["tool_calls"] = []
    data.pop("name", None)
    return data


def as_message(value: Message | Mapping[str, Any]) -> Message:
    """A message from a :data:`Message` or an OpenAI-style dict; raises :class:`ConfigError`."""
    if isinstance(value, _MESSAGE_TYPES):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"a message must be a Message or a dict, not {type(value).__name__}")
    try:
        return _MESSAGE_ADAPTER.validate_python(_normalize_dict(value))
    except (ValidationError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"invalid message {dict(value)!r}: {exc}") from exc


def as_messages(values: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    return [as_message(v) for v in values]


class ToolParam(_Frozen):
    """One parameter as the Llama tool prompts describe it (derived from the JSON schema)."""

    name: str
    param_type: str
    description: str | None = None
    required: bool = True
    default: Any = None


_OBJECT_SCHEMA_KEYS = frozenset(
    {
        "$defs",
        "$id",
        "$schema",
        "additionalProperties",
        "allOf",
        "anyOf",
        "default",
        "definitions",
        "description",
        "examples",
        "maxProperties",
        "minProperties",
        "not",
        "oneOf",
        "patternProperties",
        "properties",
        "propertyNames",
        "required",
        "title",
        "type",
        "unevaluatedProperties",
    }
)
"""The keywords an object's JSON schema may have at its top level."""


class ToolDefinition(_Frozen):
    """A tool offered to the model: a name, a description and a JSON schema for its arguments.

    Built-in tools are definitions whose name is a :class:`BuiltinTool` value (use
    :meth:`builtin`). Build custom ones from a JSON schema, a pydantic model or a function.
    """

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}, "required": []}
    )

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        """An object schema: parameters given as ``{name: {...}}`` (llama-stack's shape) would
        otherwise reach the model as a tool without parameters."""
        if value.get("type", "object") != "object":
            raise ValueError("parameters must be the JSON schema of an object (type: object)")
        unknown = sorted(set(value) - _OBJECT_SCHEMA_KEYS)
        if unknown and "properties" not in value:
            raise ValueError(
                f"parameters must be a JSON schema ({{type: object, properties: {{name: "
                f"{{type: ..., description: ...}}}}, required: [...]}}), not a mapping of "
                f"parameter names ({', '.join(unknown)})"
            )
        return value

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_TOOL_NAMES

    @classmethod
    def builtin(cls, tool: BuiltinTool | str) -> ToolDefinition:
        return cls(name=BuiltinTool(tool).value)

    @classmethod
    def from_json_schema(
        cls, name: str, schema: Mapping[str, Any], description: str = ""
    ) -> ToolDefinition:
        if schema.get("type", "object") != "object":
            raise ConfigError(f"tool {name!r}: the parameters schema must be an object schema")
        return cls(name=name, description=description, parameters=dict(schema))

    @classmethod
    def from_model(
        cls, model: type[BaseModel], name: str | None = None, description: str | None = None
    ) -> ToolDefinition:
        schema = model.model_json_schema()
        desc = description if description is not None else schema.pop("description", "")
        schema.pop("title", None)
        return cls(name=name or model.__name__, description=desc or "", parameters=schema)

    @classmethod
    def from_function(cls, fn: Any, name: str | None = None) -> ToolDefinition:
        from agentic._functions import function_schema

        fs = function_schema(fn)
        return cls(name=name or fs.name, description=fs.description, parameters=fs.parameters)

    def params(self) -> list[ToolParam]:
        """Top-level parameters in schema order, with Llama's ``param_type`` naming.

        The Llama tool prompts show a parameter's type and description only, so what the
        type alone does not say (allowed values, the fields of an object, what a list holds)
        is added to the description; ``$ref`` s into ``$defs`` are followed.
        """
        props: Mapping[str, Any] = self.parameters.get("properties") or {}
        required = set(self.parameters.get("required") or [])
        defs: Mapping[str, Any] = self.parameters.get("$defs") or {}
        out = []
        for pname, raw in props.items():
            prop = _resolved(raw, defs)
            description = raw.get("description") or prop.get("description")
            details = _details(prop, defs)
            if details:
                description = f"{description.rstrip()} {details}" if description else details
            out.append(
                ToolParam(
                    name=pname,
                    param_type=_param_type(prop, defs),
                    description=description,
                    required=pname in required,
                    default=raw.get("default", prop.get("default")),
                )
            )
        return out


def _resolved(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """``prop`` with a local ``$ref`` (also one wrapped alone in ``allOf``) followed."""
    for _ in range(8):  # a chain of references, never a cycle
        ref = prop.get("$ref")
        if ref is None and len(prop.get("allOf") or ()) == 1:
            ref = prop["allOf"][0].get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return prop
        target = defs.get(ref.removeprefix("#/$defs/"))
        if not isinstance(target, Mapping):
            return prop
        prop = target
    return prop


def _variants(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    for key in ("anyOf", "oneOf"):
        if isinstance(prop.get(key), list):
            return [_resolved(p, defs) for p in prop[key] if isinstance(p, Mapping)]
    return [prop]


def _param_type(prop: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> str:
    defs = defs or {}
    prop = _resolved(prop, defs)
    kind = prop.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    for key in ("anyOf", "oneOf"):
        if key in prop:
            return " | ".join(_param_type(p, defs) for p in prop[key])
    if "enum" in prop:
        return "string"
    return "object"


def _details(prop: Mapping[str, Any], defs: Mapping[str, Any], depth: int = 0) -> str:
    """What a parameter's type does not say, as a sentence or two (empty when nothing)."""
    parts: list[str] = []
    values = [v for p in _variants(prop, defs) for v in _allowed(p)]
    if values:
        # single quotes: the reference templates put descriptions into JSON unescaped
        parts.append("One of: " + ", ".join(_shown(v) for v in values) + ".")
    for variant in _variants(prop, defs):
        if variant.get("type") == "array" and isinstance(variant.get("items"), Mapping):
            items = _resolved(variant["items"], defs)
            inner = _details(items, defs, depth + 1) if depth < 2 else ""
            parts.append(
                f"A list of {_param_type(items, defs)}." + (f" Each: {inner}" if inner else "")
            )
        elif variant.get("type") == "object" and isinstance(variant.get("properties"), Mapping):
            if depth >= 2:
                continue
            required = set(variant.get("required") or ())
            fields = []
            for name, sub in variant["properties"].items():
                sub = _resolved(sub, defs)
                note = _details(sub, defs, depth + 1)
                fields.append(
                    f"{name} ({_param_type(sub, defs)}{', required' if name in required else ''})"
                    + (f": {note}" if note else "")
                )
            parts.append("An object with " + "; ".join(fields) + ".")
    return " ".join(parts)


def _shown(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _allowed(prop: Mapping[str, Any]) -> list[Any]:
    if isinstance(prop.get("enum"), list):
        return list(prop["enum"])
    return [prop["const"]] if "const" in prop else []


def json_schema_of(fmt: type[BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """A JSON schema from a pydantic model class or a schema mapping."""
    if isinstance(fmt, type) and issubclass(fmt, BaseModel):
        return fmt.model_json_schema()
    if isinstance(fmt, Mapping):
        return dict(fmt)
    raise ConfigError("response_format must be a pydantic model class or a JSON schema dict")


class SamplingParams(_Settings, _Frozen):
    """Sampling settings; ``None`` leaves a setting to the server's default."""

    _what: ClassVar[str] = "sampling params"

    temperature: float = Field(default=0.6, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=-1)
    """``-1`` or ``0`` turn top-k off, as in vLLM."""
    max_tokens: int | None = Field(default=None, ge=1)
    repetition_penalty: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


class Usage(_Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Artifact(_Frozen):
    """A file a tool made (a code-interpreter figure, a file written under ``outputs/``).

    Artifacts ride on the tool result and the turn for the caller; the model does not see the
    bytes. In JSON the bytes are base64.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64"
    )

    name: str
    """A file name (``figure_1.png``, ``outputs/summary.csv``)."""
    mime_type: str
    data: bytes

    @property
    def size(self) -> int:
        """Bytes of data."""
        return len(self.data)

    @property
    def is_image(self) -> bool:
        return self.mime_type.startswith("image/")

    def as_image(self) -> ImageContent:
        """The artifact as an image content part (to show it, or send it to a vision model)."""
        if not self.is_image:
            raise ConfigError(f"artifact {self.name!r} is {self.mime_type}, not an image")
        return ImageContent.from_bytes(self.data, self.mime_type)


class Document(_Frozen):
    """A document attached to a turn: its text, a name to cite it by, and metadata.

    Short documents go into the prompt as context; the memory layer chunks long ones.
    """

    content: str
    name: str = ""
    mime_type: str = "text/plain"
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_path(cls, path: str | Path, **metadata: Any) -> Document:
        """A UTF-8 text file as a document named after the file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read document {str(p)!r} as UTF-8 text: {exc}") from exc
        mime = mimetypes.guess_type(p.name)[0] or "text/plain"
        return cls(content=text, name=p.name, mime_type=mime, metadata=metadata)
