"""Google Gemini API wire format (``generateContent`` / ``streamGenerateContent``), pure.

The shapes the gateway sends and reads, as ``TypedDict``s over plain JSON, plus the two
vocabularies translation needs: finish/block reasons and the JSON Schema subset Gemini's
``Schema`` object accepts (``json_schema_to_gemini``). Sources:

- Request/response bodies: https://ai.google.dev/api/generate-content (``GenerateContentRequest``,
  ``GenerateContentResponse``, ``Candidate``, ``FinishReason``, ``PromptFeedback.BlockReason``,
  ``UsageMetadata``, ``GenerationConfig``).
- ``Content``/``Part``/``Blob``/``FileData``/``FunctionCall``/``FunctionResponse``/``Tool``/
  ``FunctionDeclaration``/``Schema``/``ToolConfig``: https://ai.google.dev/api/caching#Content.
- Streaming with ``?alt=sse`` (one ``GenerateContentResponse`` per ``data:`` event):
  https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent.
- Error bodies ``{"error": {"code", "message", "status", "details"}}`` and their statuses:
  https://ai.google.dev/gemini-api/docs/troubleshooting.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

from relaygate.errors import InvalidRequestError

__all__ = [
    "BLOCK_FINISH_REASONS",
    "GRPC_STATUS",
    "Blob",
    "Candidate",
    "Content",
    "FileData",
    "FunctionCall",
    "FunctionResponse",
    "GenerateContentResponse",
    "Part",
    "UsageMetadata",
    "error_body",
    "generate_url",
    "json_schema_to_gemini",
]

Role = Literal["user", "model"]


class Blob(TypedDict):
    mimeType: str
    data: str  # base64


class FileData(TypedDict):
    fileUri: str
    mimeType: NotRequired[str]


class FunctionCall(TypedDict):
    name: str
    args: NotRequired[dict[str, Any]]
    id: NotRequired[str]


class FunctionResponse(TypedDict):
    name: str
    response: dict[str, Any]
    id: NotRequired[str]


class Part(TypedDict, total=False):
    """Exactly one data field is set; ``thought`` marks a thought summary, ``thoughtSignature``
    is the opaque token Gemini 3 wants back on the functionCall part it came with."""

    text: str
    inlineData: Blob
    fileData: FileData
    functionCall: FunctionCall
    functionResponse: FunctionResponse
    thought: bool
    thoughtSignature: str


class Content(TypedDict):
    role: NotRequired[Role]
    parts: list[Part]


class UsageMetadata(TypedDict, total=False):
    promptTokenCount: int  # includes cachedContentTokenCount
    cachedContentTokenCount: int
    candidatesTokenCount: int  # excludes thoughts
    thoughtsTokenCount: int
    toolUsePromptTokenCount: int
    totalTokenCount: int


class Candidate(TypedDict, total=False):
    content: Content
    finishReason: str
    index: int


class GenerateContentResponse(TypedDict, total=False):
    candidates: list[Candidate]
    promptFeedback: dict[str, Any]
    usageMetadata: UsageMetadata
    modelVersion: str
    responseId: str


# FinishReason values that mean "stopped by a filter" (OpenAI: content_filter). The rest:
# STOP -> stop, MAX_TOKENS -> length; OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL,
# UNEXPECTED_TOOL_CALL, TOO_MANY_TOOL_CALLS, FINISH_REASON_UNSPECIFIED -> stop (the model ended
# without a filter and without hitting the limit; OpenAI has no closer value).
BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)

# HTTP status -> the canonical status string Google puts in ``error.status`` (google.rpc.Code,
# as listed on the troubleshooting page).
GRPC_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(code: int, message: str, status: str | None = None, details: list[Any] | None = None) -> dict:
    """Google's error object: ``{"error": {"code", "message", "status"[, "details"]}}``."""
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or GRPC_STATUS.get(code, "UNKNOWN"),
    }
    if details:
        err["details"] = details
    return {"error": err}


def generate_url(base_url: str, model: str, *, stream: bool) -> str:
    """``{base}/models/{model}:generateContent`` or ``:streamGenerateContent?alt=sse``.

    ``model`` may already carry its collection (``models/...``, ``tunedModels/...``).
    """
    name = model if "/" in model else f"models/{model}"
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return f"{base_url.rstrip('/')}/{name}:{action}"


# --- JSON Schema -> Gemini Schema -----------------------------------------------------------
# Gemini's Schema is "a select subset of an OpenAPI 3.0 schema object"
# (https://ai.google.dev/api/caching#Schema): type, format, title, description, nullable, enum
# (strings), maxItems, minItems, properties, required, minProperties, maxProperties, minLength,
# maxLength, pattern, example, anyOf, propertyOrdering, default, items, minimum, maximum.
_COPY = frozenset(
    {
        "format",
        "title",
        "description",
        "nullable",
        "maxItems",
        "minItems",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "propertyOrdering",
        "default",
        "minimum",
        "maximum",
    }
)
# Keywords with no effect on which values are valid (JSON Schema 2020-12 core: identifiers and
# comments); removing them is semantically neutral.
_NEUTRAL = frozenset({"$schema", "$id", "$comment", "$anchor"})
_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}


def json_schema_to_gemini(schema: object, param: str) -> dict[str, Any]:
    """Translate a JSON Schema (as OpenAI tools and ``response_format`` carry it) to Gemini's
    ``Schema``, keeping its meaning exactly.

    Faithful rewrites: ``type`` names upper-cased; ``type: [T, "null"]`` and ``anyOf`` with a
    ``{"type": "null"}`` branch become ``nullable: true``; local ``$ref`` to ``$defs``/
    ``definitions`` is inlined (non-recursive only); a single-element ``allOf`` is merged;
    ``const`` of a string becomes a one-value ``enum``; ``additionalProperties: false`` is
    dropped because Gemini only ever generates the declared ``properties``; identifiers and
    comments (``$schema``, ``$id``, ``$comment``, ``$anchor``) are dropped.

    Raises ``InvalidRequestError`` (param ``param`` + the keyword's path) for anything Gemini
    cannot express: ``oneOf``, ``not``, ``if``, ``patternProperties``, ``additionalProperties``
    other than false, non-string ``enum`` values, recursive ``$ref``, tuple ``items``, ...
    """
    if not isinstance(schema, dict):
        raise InvalidRequestError(
            f"'{param}' must be a JSON Schema object.", param=param, code="invalid_type"
        )
    defs: dict[str, Any] = {}
    for key in ("$defs", "definitions"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": sub for name, sub in schema[key].items()})
    return _convert(schema, param, defs, ())


def _unsupported(where: str, keyword: str, why: str = "") -> InvalidRequestError:
    return InvalidRequestError(
        f"'{where}' uses JSON Schema keyword '{keyword}', which the Gemini API's Schema cannot "
        f"express{': ' + why if why else ''} (https://ai.google.dev/api/caching#Schema).",
        param=where,
        code="unsupported_schema",
    )


def _convert(node: object, where: str, defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(node, dict):
        if node is True:
            return {}
        raise _unsupported(where, repr(node), "a schema must be an object")
    node, seen = _resolve(node, where, defs, seen)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
        inner, seen = _resolve(all_of[0], f"{where}.allOf[0]", defs, seen)
        node = {**inner, **{k: v for k, v in node.items() if k != "allOf"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{where}.{key}"
        if key in _NEUTRAL or key in ("$defs", "definitions"):
            continue
        if key == "type":
            out.update(_type(value, path))
        elif key in _COPY:
            out[key] = value
        elif key == "enum":
            out["enum"] = _enum(value, path)
        elif key == "const":
            out["enum"] = _enum([value], path)
        elif key == "properties":
            if not isinstance(value, dict):
                raise _unsupported(path, key, "must be an object")
            out["properties"] = {
                name: _convert(sub, f"{path}.{name}", defs, seen) for name, sub in value.items()
            }
        elif key == "items":
            if isinstance(value, list):
                raise _unsupported(path, key, "tuple validation (an array of schemas)")
            out["items"] = _convert(value, path, defs, seen)
        elif key == "anyOf":
            out.update(_any_of(value, path, defs, seen))
        elif key == "additionalProperties":
            if value is not False:
                raise _unsupported(path, key, "only 'false' (the Gemini default) can be honoured")
        else:
            raise _unsupported(path, key)
    return out


def _resolve(
    node: dict[str, Any], where: str, defs: dict[str, Any], seen: tuple[str, ...]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Follow local ``$ref``s: the referenced schema with the sibling keywords merged over it."""
    while "$ref" in node:
        ref = node["$ref"]
        if ref not in defs:
            why = f"only local references into $defs are inlined ({ref!r})"
            raise _unsupported(f"{where}.$ref", "$ref", why)
        if ref in seen:
            raise _unsupported(f"{where}.$ref", "$ref", f"recursive reference {ref!r}")
        target = defs[ref]
        if not isinstance(target, dict):
            raise _unsupported(f"{where}.$ref", "$ref", f"{ref!r} is not a schema object")
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen = (*seen, ref)
    return node, seen


def _type(value: object, where: str) -> dict[str, Any]:
    raw = value if isinstance(value, list) else [value]
    names = [n for n in raw if isinstance(n, str) and n in _TYPES]
    if len(names) != len(raw) or not names:
        raise _unsupported(where, "type", f"unknown type {value!r}")
    non_null = [n for n in names if n != "null"]
    if len(non_null) > 1:
        raise _unsupported(where, "type", "several non-null types (use anyOf)")
    out: dict[str, Any] = {"type": _TYPES[non_null[0] if non_null else "null"]}
    if non_null and len(names) > len(non_null):
        out["nullable"] = True
    return out


def _enum(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _unsupported(where, "enum", "Gemini enums hold strings only")
    return list(value)


def _any_of(value: object, where: str, defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, list) or not value:
        raise _unsupported(where, "anyOf", "must be a non-empty array")
    branches = [b for b in value if not (isinstance(b, dict) and b == {"type": "null"})]
    nullable = len(branches) < len(value)
    converted = [_convert(b, f"{where}[{i}]", defs, seen) for i, b in enumerate(branches)]
    if len(converted) == 1:
        out = dict(converted[0])
    elif converted:
        out = {"anyOf": converted}
    else:
        out = {"type": "NULL"}
    if nullable and converted:
        out["nullable"] = True
    return out
