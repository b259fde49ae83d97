"""Chat backends for prompt rewriting.

* :class:`OpenAIChatBackend`: any OpenAI-compatible ``/v1/chat/completions`` server (llama.cpp
  server, vLLM, Ollama, LM Studio, ...), spoken to with ``bounded_http`` (standard library: one
  deadline per request, a capped answer, no redirects).
* :class:`LocalChatBackend`: a transformers causal LM loaded from a local folder.

Both return a :class:`ChatReply`; failures raise :class:`PromptRewriteError` with a message that
says what was expected, what happened and what to do.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol

from .. import bounded_http
from ..bounded_http import ConnectionFailed, Deadline, DeadlineExceeded, MalformedAnswer
from ..errors import HyVideoError, InputError

logger = logging.getLogger(__name__)

Messages = List[Dict[str, str]]


class PromptRewriteError(HyVideoError):
    """The rewrite model could not be reached or gave an unusable answer."""


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: Optional[str] = None  # "stop", "length" (cut by max_tokens), ...


class ChatBackend(Protocol):
    name: str

    def chat(self, messages: Messages, *, temperature: float, seed: Optional[int], max_tokens: int) -> ChatReply:
        ...


def chat_completions_url(url: str) -> str:
    """Accept ``http://host:port``, ``.../v1`` or the full ``.../v1/chat/completions`` address."""
    u = url.strip().rstrip("/")
    if not u.startswith(("http://", "https://")):
        raise InputError(f"rewrite server URL must start with http:// or https://; found {url!r} "
                         f"(e.g. http://127.0.0.1:8080 for llama.cpp server, http://127.0.0.1:11434 for Ollama).")
    if u.endswith("/chat/completions"):
        return u
    if u.endswith("/v1"):
        return u + "/chat/completions"
    return u + "/v1/chat/completions"


class OpenAIChatBackend:
    """OpenAI-compatible chat-completions endpoint over HTTP.

    ``timeout`` bounds each request as a whole (connect, send, the whole answer); the answer is
    capped at ``MAX_ANSWER_BYTES``; redirects are not followed (the API key goes to ``url`` only)."""

    MAX_ANSWER_BYTES = 4 << 20  # a few hundred words of rewrite are a few KB

    def __init__(self, url: str, model: str = "default", api_key: Optional[str] = None, timeout: float = 60.0):
        self.url = chat_completions_url(url)
        self.model = model or "default"
        self.api_key = api_key
        self.timeout = float(timeout)
        self.name = f"{self.url} ({self.model})"

    def chat(self, messages: Messages, *, temperature: float = 0.0, seed: Optional[int] = None,
             max_tokens: int = 512, deadline: Optional[Deadline] = None) -> ChatReply:
        """One completion; ``deadline`` (a :class:`Deadline`), when sooner than ``timeout``, ends it."""
        body: Dict[str, Any] = {"model": self.model, "messages": messages, "temperature": float(temperature),
                                "max_tokens": int(max_tokens), "stream": False}
        if seed is not None:
            body["seed"] = int(seed)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        limit = Deadline(self.timeout) if deadline is None else deadline.within(self.timeout)
        try:
            answer = bounded_http.request(self.url, method="POST", body=json.dumps(body).encode("utf-8"),
                                          headers=headers, deadline=limit, max_body=self.MAX_ANSWER_BYTES)
        except DeadlineExceeded as exc:
            raise PromptRewriteError(
                f"the rewrite server {self.url} gave no answer within {limit.seconds:g} s. The model may be "
                f"loading or too slow; raise the timeout or use a smaller model.") from exc
        except ConnectionFailed as exc:
            raise PromptRewriteError(
                f"cannot reach the rewrite server at {self.url}: {exc}. Start it (e.g. "
                f"`llama-server -m model.gguf --port 8080`, `ollama serve`, `vllm serve ...`) or fix the URL.") from exc
        except MalformedAnswer as exc:
            raise PromptRewriteError(f"the rewrite server {self.url} sent an unusable answer: {exc}. Expected an "
                                     f"OpenAI-compatible chat-completions endpoint at that address.") from exc
        except ValueError as exc:  # an address or header http.client cannot send
            raise PromptRewriteError(f"cannot send the request to the rewrite server {self.url}: {exc}") from exc
        if answer.status != 200:
            detail = answer.body[:300].decode("utf-8", "replace")
            raise PromptRewriteError(
                f"the rewrite server {self.url} answered HTTP {answer.status} {answer.reason}: {detail!r}. Expected "
                f"200 from an OpenAI-compatible chat-completions endpoint; check the URL, the model name "
                f"{self.model!r} and the API key.")
        return self._reply(answer.body)

    def _reply(self, raw: bytes) -> ChatReply:
        def unusable(found: str) -> PromptRewriteError:
            return PromptRewriteError(
                f"the rewrite server {self.url} sent an answer that is not chat-completions JSON (expected "
                f"{{'choices': [{{'message': {{'content': '<text>'}}}}]}}); {found}.")

        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise unusable(f"found {raw[:200]!r}") from exc
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise unusable(f"found {raw[:200]!r}")
        choice = choices[0]
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        if text is None:  # legacy completions put the text beside the choice
            text = choice.get("text")
        if not isinstance(text, str):
            raise unusable(f"the content is {type(text).__name__} {str(text)[:100]!r}, not text")
        reason = choice.get("finish_reason")
        return ChatReply(text, reason if isinstance(reason, str) else None)


class LocalChatBackend:
    """A transformers causal LM from a local folder (loaded on first use, never downloaded)."""

    def __init__(self, model_path: str, device: str = "cpu", dtype: Any = None):
        self.model_path = str(model_path)
        self.device = device
        self.dtype = dtype
        self.name = f"local:{self.model_path}"
        self._model = None
        self._tokenizer = None

    def _load(self) -> None:
        if self._model is not None:
            return
        import os

        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isdir(self.model_path) or not os.path.isfile(os.path.join(self.model_path, "config.json")):
            raise PromptRewriteError(
                f"local rewrite model folder {self.model_path!r} not found or has no config.json. Expected a "
                f"Hugging Face chat model folder (config.json, *.safetensors, tokenizer files).")
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(self.model_path, local_files_only=True,
                                                               dtype=self.dtype).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise PromptRewriteError(f"could not load the local rewrite model from {self.model_path!r}: {exc}") from exc

    def _format(self, messages: Messages) -> str:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        logger.info("rewrite model has no chat template; using a plain role-prefixed format")
        return "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant:"

    def chat(self, messages: Messages, *, temperature: float = 0.0, seed: Optional[int] = None,
             max_tokens: int = 512) -> ChatReply:
        import torch

        self._load()
        tok, model = self._tokenizer, self._model
        text = self._format(messages)
        batch = tok(text, return_tensors="pt", add_special_tokens=not getattr(tok, "chat_template", None))
        batch = {k: v.to(model.device) for k, v in batch.items()}
        kwargs: Dict[str, Any] = dict(max_new_tokens=int(max_tokens), pad_token_id=tok.pad_token_id
                                      if tok.pad_token_id is not None else tok.eos_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs.update(do_sample=False)
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(0 if seed is None else int(seed))
            out = model.generate(**batch, **kwargs)
        new = out[0, batch["input_ids"].shape[1]:]
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        finished = len(new) > 0 and int(new[-1]) in eos_ids
        reason = "stop" if finished or len(new) < max_tokens else "length"
        return ChatReply(tok.decode(new, skip_special_tokens=True), reason)
