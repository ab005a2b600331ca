"""OpenAI ``messages`` and ``tools`` -> Gemini ``contents``/``systemInstruction``/``tools`` (pure).

Part of the OpenAI -> Gemini request translation (``translate_gemini``). Sources:
https://ai.google.dev/api/caching#Content (Content, Part, Blob, FileData, FunctionCall,
FunctionResponse, Tool, FunctionDeclaration, ToolConfig, FunctionCallingConfig);
https://ai.google.dev/gemini-api/docs/function-calling (results go back as functionResponse
parts of a ``user`` turn, matched to the call by function name; ``response`` is a JSON object
whose ``output`` key holds the function's output);
https://ai.google.dev/gemini-api/docs/thought-signatures (the signature goes back on the first
functionCall part of a turn; ``skip_thought_signature_validator`` for history Gemini did not
produce).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from relaygate.errors import InvalidRequestError
from relaygate.protocols.gemini import json_schema_to_gemini

__all__ = ["SKIP_SIGNATURE", "messages_to_contents", "tools_to_gemini"]

SKIP_SIGNATURE = "skip_thought_signature_validator"
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[^;,]*)*);base64,(.*)$", re.S)
# Extension -> MIME type for http(s) URLs (Gemini's fileData needs a mimeType); the image and
# document types Gemini's media guides list as supported.
_EXT_MIME = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "gif": "image/gif",
    "pdf": "application/pdf",
    "wav": "audio/wav",
    "mp3": "audio/mp3",
}
_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}


def _bad(message: str, param: str, code: str = "unsupported_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def messages_to_contents(messages: object) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(``systemInstruction`` or None, ``contents``) for OpenAI ``messages``.

    Leading system/developer messages become the parts of ``systemInstruction`` (Gemini has one,
    before the conversation); user -> role ``user``; assistant -> role ``model`` (text parts, then
    one ``functionCall`` part per tool call, ``arguments`` parsed as a JSON object); a run of
    tool messages -> one ``user`` turn of ``functionResponse`` parts, each named after the call
    its ``tool_call_id`` answers. Empty text is omitted and a message left with no parts is
    omitted (it carries nothing). ``reasoning_content`` on assistant messages is omitted: Gemini
    does not take earlier turns' thoughts as input (thought-signatures guide).

    Raises ``InvalidRequestError`` naming ``messages[i]...`` for: a system message after the
    conversation began, ``name`` on a message, role ``function``, unknown content part types,
    non-base64 data URLs, http URLs of unknown media type, ``image_url.detail`` other than
    ``auto``, ``file_id`` references, audio output, tool calls whose arguments are not a JSON
    object, and tool results whose ``tool_call_id`` matches no earlier call.
    """
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages", "invalid_type")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool_call_id -> function name
    began = False
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"'{where}' must be an object.", where, "invalid_type")
        role = msg.get("role")
        if msg.get("name") is not None:
            raise _bad(f"'{where}.name' has no equivalent in the Gemini API.", f"{where}.name")
        if role in ("system", "developer"):
            if began:
                raise _bad(
                    f"'{where}': the Gemini API takes system instructions only before the "
                    "conversation; move this message to the start.",
                    f"{where}.role",
                )
            system.extend(_text_parts(msg.get("content"), where, allow=("text",)))
            continue
        began = True
        if role == "user":
            parts = _user_parts(msg.get("content"), where)
            if parts:
                contents.append({"role": "user", "parts": parts})
        elif role == "assistant":
            parts = _assistant_parts(msg, where, names)
            if parts:
                contents.append({"role": "model", "parts": parts})
        elif role == "tool":
            part = _tool_result(msg, where, names)
            last = contents[-1] if contents else None
            if last is not None and last["role"] == "user" and "functionResponse" in last["parts"][-1]:
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
        else:
            raise _bad(f"'{where}.role' {role!r} cannot be translated to the Gemini API.", f"{where}.role")
    if not contents:
        raise _bad(
            "The Gemini API needs at least one user or assistant message.", "messages", "invalid_value"
        )
    return ({"parts": system} if system else None), contents


def _text_parts(content: object, where: str, allow: tuple[str, ...]) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise _bad(f"'{where}.content' must be a string or an array.", f"{where}.content", "invalid_type")
    parts = []
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allow:
            raise _bad(f"'{pw}.type' {kind!r} is not allowed here.", f"{pw}.type")
        text = part.get("text" if kind == "text" else "refusal")
        if not isinstance(text, str):
            raise _bad(f"'{pw}' needs a string '{kind}'.", pw, "invalid_type")
        if text:
            parts.append({"text": text})
    return parts


def _user_parts(content: object, where: str) -> list[dict[str, Any]]:
    if not isinstance(content, list):
        return _text_parts(content, where, allow=("text",))
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        pw = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.extend(_text_parts([part], where, allow=("text",)))
        elif kind == "image_url":
            parts.append(_image_part(part.get("image_url"), f"{pw}.image_url"))
        elif kind == "input_audio":
            parts.append(_audio_part(part.get("input_audio"), f"{pw}.input_audio"))
        elif kind == "file":
            parts.append(_file_part(part.get("file"), f"{pw}.file"))
        else:
            raise _bad(f"'{pw}.type' {kind!r} cannot be translated to the Gemini API.", f"{pw}.type")
    return parts


def _image_part(spec: object, where: str) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, dict) else None
    if not isinstance(url, str) or not url:
        raise _bad(f"'{where}.url' is required.", f"{where}.url", "missing_required_parameter")
    assert isinstance(spec, dict)
    if spec.get("detail") not in (None, "auto"):
        raise _bad(
            f"'{where}.detail' {spec['detail']!r} has no per-image equivalent in the Gemini API; "
            "omit it or use 'auto'.",
            f"{where}.detail",
        )
    return _media_part(url, f"{where}.url")


def _media_part(url: str, where: str) -> dict[str, Any]:
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            raise _bad(
                f"'{where}' must be a base64 data URL (data:<mime>;base64,...).", where, "invalid_value"
            )
        return {"inlineData": {"mimeType": m.group(1), "data": m.group(3)}}
    if url.startswith(("http://", "https://", "gs://")):
        path = url.split("?", 1)[0].split("#", 1)[0]
        ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        mime = _EXT_MIME.get(ext)
        if mime is None:
            raise _bad(
                f"'{where}': the Gemini API needs the media type of a URL and it cannot be told from "
                f"{url[:100]!r}; send the image as a base64 data URL instead.",
                where,
            )
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise _bad(f"'{where}' must be an http(s) URL or a base64 data URL.", where, "invalid_value")


def _audio_part(spec: object, where: str) -> dict[str, Any]:
    data = spec.get("data") if isinstance(spec, dict) else None
    fmt = spec.get("format") if isinstance(spec, dict) else None
    if not isinstance(data, str) or fmt not in _AUDIO_MIME:
        raise _bad(f"'{where}' needs base64 'data' and 'format' wav or mp3.", where, "invalid_value")
    return {"inlineData": {"mimeType": _AUDIO_MIME[str(fmt)], "data": data}}


def _file_part(spec: object, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise _bad(f"'{where}' must be an object.", where, "invalid_type")
    if spec.get("file_id"):
        raise _bad(
            f"'{where}.file_id': OpenAI file ids cannot be read by the Gemini API.", f"{where}.file_id"
        )
    data = spec.get("file_data")
    if not isinstance(data, str) or not data:
        raise _bad(f"'{where}.file_data' is required.", f"{where}.file_data", "missing_required_parameter")
    if data.startswith("data:"):
        return _media_part(data, f"{where}.file_data")
    name = spec.get("filename")
    mime = _EXT_MIME.get(name.rsplit(".", 1)[-1].lower()) if isinstance(name, str) and "." in name else None
    if mime is None:
        raise _bad(f"'{where}': give 'file_data' as a data URL or a filename with a known extension.", where)
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(msg: dict[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    if msg.get("audio") is not None:
        raise _bad(f"'{where}.audio' cannot be translated to the Gemini API.", f"{where}.audio")
    if msg.get("function_call") is not None:
        raise _bad(f"'{where}.function_call' is deprecated; use tool_calls.", f"{where}.function_call")
    parts = _text_parts(msg.get("content"), where, allow=("text", "refusal"))
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"'{where}.tool_calls' must be an array.", f"{where}.tool_calls", "invalid_type")
    for k, call in enumerate(calls):
        cw = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or call.get("type", "function") != "function"
        ):
            raise _bad(f"'{cw}' must be a function call with a name.", cw, "invalid_value")
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else None
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise _bad(
                f"'{cw}.function.arguments' must be a JSON object for the Gemini API.",
                f"{cw}.function.arguments",
                "invalid_value",
            )
        if isinstance(call.get("id"), str):
            names[call["id"]] = fn["name"]
        part: dict[str, Any] = {"functionCall": {"name": fn["name"], "args": args}}
        extra = call.get("extra_content")
        sig = extra.get("google", {}).get("thought_signature") if isinstance(extra, dict) else None
        if isinstance(sig, str) and sig:
            part["thoughtSignature"] = sig
        elif k == 0:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _tool_result(msg: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise _bad(
            f"'{where}.tool_call_id' {call_id!r} answers no earlier assistant tool call; the Gemini "
            "API matches function results to calls by name.",
            f"{where}.tool_call_id",
            "invalid_value",
        )
    text = "".join(p["text"] for p in _text_parts(msg.get("content"), where, allow=("text",)))
    return {"functionResponse": {"name": name, "response": {"output": text}}}


# --- tools ---------------------------------------------------------------------------------


def tools_to_gemini(tools: object, choice: object) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(``tools``, ``toolConfig``) for OpenAI ``tools`` and ``tool_choice``.

    Each function -> a ``functionDeclarations`` entry (``parameters`` via
    ``json_schema_to_gemini``; an object schema with no properties is omitted, which Gemini
    reads as "no parameters"). tool_choice: "auto" -> AUTO, "none" -> NONE, "required" -> ANY,
    a named function -> ANY + ``allowedFunctionNames``, ``allowed_tools`` with mode
    "required" -> ANY + names. Any ``strict: true`` function with AUTO becomes mode VALIDATED
    (Gemini validates calls with constrained decoding; ANY always does).
    """
    if tools in (None, []):
        if choice not in (None, "none", "auto"):
            raise _bad("'tool_choice' needs 'tools'.", "tool_choice", "invalid_value")
        return [], None
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array.", "tools", "invalid_type")
    decls: list[dict[str, Any]] = []
    strict = False
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(
                f"'{where}.type' {kind!r}: only function tools can be sent to the Gemini API.",
                f"{where}.type",
            )
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(
                f"'{where}.function.name' is required.",
                f"{where}.function.name",
                "missing_required_parameter",
            )
        decl: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if params is not None:
            schema = json_schema_to_gemini(params, f"{where}.function.parameters")
            if schema.get("properties") or schema.get("type") not in ("OBJECT", None):
                decl["parameters"] = schema
        strict = strict or fn.get("strict") is True
        decls.append(decl)
    names = [d["name"] for d in decls]
    return [{"functionDeclarations": decls}], _tool_config(choice, names, strict)


def _tool_config(choice: object, names: list[str], strict: bool) -> dict[str, Any] | None:
    auto = "VALIDATED" if strict else "AUTO"
    if choice is None:
        return {"functionCallingConfig": {"mode": auto}} if strict else None
    if choice == "auto":
        return {"functionCallingConfig": {"mode": auto}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(choice, dict) and choice.get("type") == "function":
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if name not in names:
            raise _bad(
                f"'tool_choice.function.name' {name!r} is not one of the tools.",
                "tool_choice.function.name",
                "invalid_value",
            )
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        spec = choice.get("allowed_tools")
        spec = spec if isinstance(spec, dict) else {}
        picked = [
            (t.get("function") or {}).get("name") for t in spec.get("tools") or [] if isinstance(t, dict)
        ]
        if spec.get("mode") != "required" or not picked or any(n not in names for n in picked):
            raise _bad(
                "'tool_choice.allowed_tools' can be sent to the Gemini API only with mode 'required' "
                "and names of declared functions.",
                "tool_choice.allowed_tools",
            )
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": picked}}
    raise _bad(
        f"'tool_choice' {choice!r} cannot be translated to the Gemini API.", "tool_choice", "invalid_value"
    )
