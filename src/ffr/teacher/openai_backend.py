"""Model-backed teacher: a tool-using VLM behind any OpenAI-compatible chat endpoint.

`OpenAITeacher` is the ``openai`` backend of the teacher service (paper Sec. 3.2 "Find, Fix").
For one failed rollout it opens a conversation (system: `prompts.system_prompt`; user: the
case and the student's frames as labelled image parts), lets the model call the three video
tools of `tools.VideoToolbox` for up to ``max_turns - 1`` turns, and reads its final reply as
an `EvidencePatch` (`replies.parse_patch`). Talks to the endpoint only through the official
SDK's async client, whose own retries and timeouts apply.

Protocols: ``tools`` sends native `tools` and reads `tool_calls`; ``text`` describes an
``ACTION: {...}`` line instead (GLM-4.5V's public API has no tool calling); ``auto`` starts
with native tools and falls back to text for good only when the server refuses a request
with a 400/422 that names ``tools`` (`upstream.refusal_names`); any other 400 is that item's
``api_http_400`` and changes nothing for the other items. The protocol in use is part of
`cache_namespace`, so patches made with text actions never answer for native tools. In
either protocol a text action in the content is honoured. Tool images go back in a *user*
message (tool messages are text-only on OpenAI and vLLM). A bad call gets an "Execution
error: ..." text and still counts against the budget.

Final reply: validated as a patch; an empty, reasoning-only or invalid final reply is
re-asked once (with `response_format` json_schema/json_object where enabled), then becomes
the item's ``error`` with a named `error_type` (empty_reply, reasoning_only, no_json,
invalid_patch). Endpoint faults become api_timeout, api_connection, api_auth,
api_rate_limit, api_http_<code>, reply_too_large (a reply body over ``max_reply_bytes``: the
item ends, the reply is never read whole nor sent back) or upstream_bad_reply (a 200 whose
body is not a chat completion). Details are redacted (`ffr.redact`): the configured key is
registered at construction and never appears in a detail or log line. Replies are parsed in
a worker thread, in linear time (`replies`), so a pathological reply never stalls the
service's event loop. `revise` continues the same conversation after a leak.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import openai

from ffr.endpoint import frame_policy, read_key_file
from ffr.leakage import patch_text_fields
from ffr.patch import EvidencePatch
from ffr.redact import register_secret
from ffr.teacher import prompts
from ffr.teacher.backends import Proposal, TeacherBackend, Usage
from ffr.teacher.replies import ReplyError, final_patch, message_parts, native_tool_calls, parse_text_action
from ffr.teacher.schema import PatchRequestItem
from ffr.teacher.tools import ToolError, VideoToolbox, image_data_url
# api_error_type is re-exported: callers name endpoint faults through this module.
from ffr.teacher.upstream import (DEFAULT_MAX_REPLY_BYTES, api_error_type, capped_http_client,  # noqa: F401
                                  fault_detail, refusal_names, usage_count)
from r1v.vision import VisionConfig

logger = logging.getLogger(__name__)

PROTOCOLS = ("auto", "tools", "text")
JSON_MODES = ("auto", "json_schema", "json_object", "off")


@dataclass
class OpenAITeacherConfig:
    """Settings of the model backend (the service CLI maps its flags onto these fields)."""

    base_url: str
    model: str
    api_key: Optional[str] = None
    protocol: str = "auto"
    json_mode: str = "auto"
    coords: str = "relative"
    max_turns: int = 4
    max_images: int = 32
    max_tokens: int = 1024
    temperature: float = 0.2
    top_p: float = 1.0
    extra_body: Optional[dict] = None
    request_timeout_s: float = 120.0
    sdk_max_retries: int = 2
    max_concurrency: int = 32
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.json_mode not in JSON_MODES:
            raise ValueError(f"json_mode must be one of {JSON_MODES}, got {self.json_mode!r}")
        if self.coords not in ("relative", "norm1000"):
            raise ValueError(f"coords must be 'relative' or 'norm1000', got {self.coords!r}")
        if min(self.max_turns, self.max_images, self.max_tokens, self.max_concurrency, self.max_reply_bytes) < 1:
            raise ValueError("max_turns, max_images, max_tokens, max_concurrency and max_reply_bytes must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.request_timeout_s <= 0:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1 and request_timeout_s > 0")
        register_secret(self.api_key)  # from here on it is masked in every detail and log line


@dataclass
class Conversation:
    """One item's dialogue and what it cost so far (the `state` of its proposals)."""

    messages: list[dict]
    protocol: str
    n_frames: int
    toolbox: VideoToolbox
    turns: int = 0
    usage: Usage = Usage()


class _Fallback(Exception):
    """The server refused native tools: restart the item with the text protocol."""


class OpenAITeacher(TeacherBackend):
    """The ``openai`` backend (see the module docstring)."""

    name = "openai"
    prompt_version = prompts.PROMPT_VERSION

    def __init__(self, config: OpenAITeacherConfig):
        self.config = config
        self.model_name = config.model
        self.protocol = "tools" if config.protocol in ("auto", "tools") else "text"
        self.json_mode = config.json_mode
        self._client: Optional[openai.AsyncOpenAI] = None
        self._semaphore: Optional[asyncio.Semaphore] = None

    @classmethod
    def from_args(cls, args) -> "OpenAITeacher":
        """The backend of the service flags (`ffr.teacher.backend_args`): ValueError naming a missing
        or bad one, `ffr.endpoint.KeyFileError` for an unusable ``--upstream-api-key-file``."""
        missing = [flag for flag, value in (("--base-url", args.base_url), ("--model", args.model)) if not value]
        if missing:
            raise ValueError(f"needs {' and '.join(missing)}")
        key_file = args.upstream_api_key_file
        key = read_key_file(key_file, "--upstream-api-key-file") if key_file else None
        return cls(OpenAITeacherConfig(
            base_url=args.base_url, model=args.model, api_key=key, protocol=args.protocol, json_mode=args.json_mode,
            coords=args.box_coords, max_turns=args.max_turns, max_images=args.max_images, max_tokens=args.max_tokens,
            temperature=args.temperature, top_p=args.top_p, extra_body=args.extra_body,
            request_timeout_s=args.request_timeout_s, sdk_max_retries=args.sdk_max_retries,
            max_concurrency=args.max_model_concurrency, max_reply_bytes=args.max_reply_bytes,
            vision=frame_policy(args)))

    @property
    def cache_namespace(self) -> str:
        c = self.config
        blob = "|".join(map(str, (c.model, prompts.PROMPT_VERSION, self.protocol, c.coords, c.max_turns, c.max_images,
                                  c.max_tokens, c.temperature, c.top_p, sorted((c.extra_body or {}).items()),
                                  prompts.schema_fingerprint(c.coords))))
        return f"openai:{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    # ------------------------------------------------------------------ endpoint
    def client(self) -> openai.AsyncOpenAI:
        """The async SDK client, created on first use inside the serving event loop."""
        if self._client is None:
            c = self.config
            self._client = openai.AsyncOpenAI(base_url=c.base_url, api_key=c.api_key or "EMPTY",
                                              timeout=c.request_timeout_s, max_retries=c.sdk_max_retries,
                                              http_client=capped_http_client(c.max_reply_bytes))
            self._semaphore = asyncio.Semaphore(c.max_concurrency)
        return self._client

    def ready(self) -> bool:
        """``GET /models`` answers (or, where it is missing, a 1-token chat call does)."""
        c = self.config
        sync = openai.OpenAI(base_url=c.base_url, api_key=c.api_key or "EMPTY", timeout=10.0, max_retries=0)
        try:
            try:
                sync.models.list()
            except openai.NotFoundError:
                sync.chat.completions.create(model=c.model, max_tokens=1,
                                             messages=[{"role": "user", "content": "ping"}])
            return True
        except openai.OpenAIError as exc:
            logger.warning("teacher endpoint %s not ready: %s", c.base_url, exc)
            return False
        finally:
            sync.close()

    # ------------------------------------------------------------------ proposals
    async def propose(self, item: PatchRequestItem) -> Proposal:
        try:
            return await self._propose(item)
        except _Fallback:
            return await self._propose(item)

    async def _propose(self, item: PatchRequestItem) -> Proposal:
        toolbox = VideoToolbox(item.video_path, item.timestamps, self.config.vision, self.config.coords)
        try:
            frames = await asyncio.to_thread(toolbox.labelled_student_frames)
        except (OSError, ValueError) as exc:
            return Proposal(patch=None, error_type="media", detail=f"cannot read the student's frames: {exc}")
        conv = self._open(item, toolbox, frames)
        return await self._run(conv)

    async def revise(self, item: PatchRequestItem, proposal: Proposal, reason: str) -> Optional[Proposal]:
        conv = proposal.state
        if not isinstance(conv, Conversation) or proposal.patch is None:
            return None
        span = offending_text(proposal.patch, reason)
        conv.messages.append(_user_text(prompts.LEAK_FEEDBACK.format(reason=reason, span=span)))
        return await self._final(conv, ask_json=True, reasked=True)

    def _open(self, item: PatchRequestItem, toolbox: VideoToolbox, frames: list) -> Conversation:
        c = self.config
        n_frames = 1 if toolbox.is_image else len(item.timestamps)
        system = prompts.system_prompt(item.gold_answer is not None, self.protocol, c.coords, c.max_turns, n_frames)
        shown = _spread(frames, c.max_images)
        parts = [{"type": "text", "text": prompts.case_text(item.question, item.options, item.student_response,
                                                            item.gold_answer, item.timestamps)}]
        parts += _image_parts(shown)
        conv = Conversation(messages=[{"role": "system", "content": system}, {"role": "user", "content": parts}],
                            protocol=self.protocol, n_frames=n_frames, toolbox=toolbox)
        conv.usage = Usage(images=len(shown))
        return conv

    async def _run(self, conv: Conversation) -> Proposal:
        """The tool loop: tool turns while the budget lasts (max_turns - 1, max_images), then the patch."""
        c = self.config
        while True:
            budget = conv.turns < c.max_turns - 1 and conv.usage.images < c.max_images
            reply = await self._chat(conv, tools=budget, ask_json=not budget)
            if isinstance(reply, Proposal):
                return reply
            calls = native_tool_calls(reply)
            content, reasoning = message_parts(reply)
            action = None if calls else await asyncio.to_thread(parse_text_action, content)
            if not calls and action is None:
                return await self._settle(conv, content, reasoning)
            conv.messages.append(_assistant(content, calls))
            if budget:
                await self._execute(conv, calls, action)
                continue
            # A tool call with the budget spent counts as the one unusable final reply.
            self._answer_tools(conv, calls, "Execution error: tool budget used up")
            conv.messages.append(_user_text(prompts.FINAL_ASK))
            return await self._final(conv, ask_json=True, reasked=True)

    async def _final(self, conv: Conversation, ask_json: bool, reasked: bool) -> Proposal:
        reply = await self._chat(conv, tools=False, ask_json=ask_json)
        if isinstance(reply, Proposal):
            return reply
        content, reasoning = message_parts(reply)
        return await self._settle(conv, content, reasoning, reasked=reasked)

    async def _settle(self, conv: Conversation, content: str, reasoning: str, reasked: bool = False) -> Proposal:
        """Parse a final reply; re-ask once on failure, then name the error."""
        conv.messages.append({"role": "assistant", "content": content})
        try:
            patch = await asyncio.to_thread(final_patch, content, reasoning, self.config.coords, conv.n_frames)
        except ReplyError as exc:
            if reasked:
                return self._proposal(conv, None, error_type=exc.kind, detail=str(exc))
            logger.info("teacher reply unusable (%s); re-asking once", exc)
            conv.messages.append(_user_text(prompts.REASK.format(problem=exc)))
            return await self._final(conv, ask_json=True, reasked=True)
        return self._proposal(conv, patch)

    async def _execute(self, conv: Conversation, calls: list, action: Optional[tuple]) -> None:
        """Run the requested tools; texts as tool messages (native) and one user message with the images."""
        requests = calls or [(None, *action)]
        texts, images = [], []
        for _cid, name, args in requests:
            try:
                result = await asyncio.to_thread(conv.toolbox.run, name, args)
                room = max(self.config.max_images - conv.usage.images - len(images), 0)
                kept = result.images[:room]
                note = "" if len(kept) == len(result.images) else \
                    f" (image budget: {len(kept)} of {len(result.images)} shown)"
                texts.append(result.text + note)
                images += kept
            except ToolError as exc:
                texts.append(f"Execution error: {exc}")
            except (OSError, ValueError) as exc:  # decoding failed mid-conversation: tell the model, go on
                texts.append(f"Execution error: {name} could not read the video ({exc})")
        if calls:
            for (cid, _name, _args), text in zip(calls, texts):
                conv.messages.append({"role": "tool", "tool_call_id": cid, "content": text})
            header = "Tool results:\n" + "\n".join(texts)
        else:
            header = "Observation:\n" + "\n".join(texts)
        conv.messages.append({"role": "user", "content": [{"type": "text", "text": header}] + _image_parts(images)})
        conv.usage = conv.usage + Usage(images=len(images))

    @staticmethod
    def _answer_tools(conv: Conversation, calls: list, text: str) -> None:
        """Every native tool call needs a tool message, even a refused one."""
        for cid, _name, _args in calls:
            conv.messages.append({"role": "tool", "tool_call_id": cid, "content": text})
        if not calls:
            conv.messages.append(_user_text(text))

    async def _chat(self, conv: Conversation, tools: bool, ask_json: bool):
        """One chat request; returns the SDK message or a failed `Proposal` naming the fault."""
        c = self.config
        kwargs: dict[str, Any] = {"model": c.model, "messages": conv.messages, "max_tokens": c.max_tokens,
                                  "temperature": c.temperature, "top_p": c.top_p}
        if c.extra_body:
            kwargs["extra_body"] = c.extra_body
        native = tools and conv.protocol == "tools"
        if native:
            kwargs["tools"], kwargs["tool_choice"] = prompts.tool_schemas(c.coords), "auto"
        response_format = self._response_format(ask_json and not native)
        if response_format:
            kwargs["response_format"] = response_format
        client = self.client()
        try:
            async with self._semaphore:
                resp = await client.chat.completions.create(**kwargs)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            # Only a refusal of the feature itself changes the protocol (for every item, for good);
            # any other 400 (one item's context too long) is that item's error.
            if native and self.config.protocol == "auto" and refusal_names(exc, "tools"):
                logger.warning("endpoint refused native tools (%s); switching to the text protocol",
                               fault_detail(exc))
                self.protocol = "text"
                raise _Fallback() from exc
            if response_format and self.json_mode == "auto" and refusal_names(exc, "response_format"):
                logger.warning("endpoint refused response_format (%s); asking for JSON in text only",
                               fault_detail(exc))
                self.json_mode = "off"
                return await self._chat(conv, tools, ask_json)
            return self._proposal(conv, None, error_type=f"api_http_{exc.status_code}", detail=fault_detail(exc))
        except openai.OpenAIError as exc:
            return self._proposal(conv, None, error_type=api_error_type(exc), detail=fault_detail(exc))
        except ValueError as exc:  # a 200 whose body is not JSON: the SDK's decoder error, unwrapped
            return self._proposal(conv, None, error_type="upstream_bad_reply", detail=fault_detail(exc))
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list):  # a 200 with a body that is not a chat completion
            return self._proposal(conv, None, error_type="upstream_bad_reply",
                                  detail=f"the endpoint answered a {type(resp).__name__}, not a chat completion")
        conv.turns += 1
        usage = getattr(resp, "usage", None)
        conv.usage = conv.usage + Usage(model_calls=1,
                                        tokens_in=usage_count(getattr(usage, "prompt_tokens", None), "prompt_tokens"),
                                        tokens_out=usage_count(getattr(usage, "completion_tokens", None),
                                                               "completion_tokens"))
        if not choices:
            return self._proposal(conv, None, error_type="empty_reply", detail="the endpoint returned no choices")
        return choices[0].message

    def _response_format(self, wanted: bool) -> Optional[dict]:
        mode = self.json_mode
        if not wanted or mode == "off" or (mode == "auto" and self.protocol == "text"):
            return None
        if mode == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": "evidence_patch", "strict": False,
                                                       "schema": prompts.patch_json_schema(self.config.coords)}}

    def _proposal(self, conv: Conversation, patch: Optional[EvidencePatch], error_type: Optional[str] = None,
                  detail: Optional[str] = None) -> Proposal:
        return Proposal(patch=patch, turns=conv.turns, detail=detail, error_type=error_type, usage=conv.usage,
                        state=conv)


def offending_text(patch: EvidencePatch, reason: str) -> str:
    """The patch field a leak reason names ("guidance: ..."), to quote back to the teacher."""
    field_name = reason.split(":", 1)[0].strip()
    for name, text in patch_text_fields(patch):
        if name == field_name:
            return text
    return patch.guidance


def _spread(items: list, k: int) -> list:
    """At most k items, evenly spread, order kept (the frame cap keeps first and last)."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    step = (len(items) - 1) / (k - 1)
    return [items[round(i * step)] for i in range(k)]


def _image_parts(labelled: list) -> list[dict]:
    parts = []
    for label, image in labelled:
        parts.append({"type": "text", "text": label})
        parts.append({"type": "image_url", "image_url": {"url": image_data_url(image)}})
    return parts


def _user_text(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(content: str, calls: list) -> dict:
    msg: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        msg["tool_calls"] = [{"id": cid, "type": "function",
                              "function": {"name": name, "arguments": args if isinstance(args, str)
                                           else json.dumps(args)}} for cid, name, args in calls]
    return msg
