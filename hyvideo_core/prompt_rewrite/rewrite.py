"""Prompt rewrite: ``rewrite_prompt(prompt, mode="normal"|"master", backend=...) -> str``.

A rewrite model restates the user's prompt in the caption style the video model was trained
on (official ``hyvideo/prompt_rewrite.py`` modes, our own wording), then, as the tech report
§4.6 describes, a self-revision pass compares the rewrite with the original and repairs lost,
contradicted or invented content. The answer is cleaned (quotes, prefaces, reasoning blocks,
code fences) and capped in length.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Optional, Union

from ..bounded_http import Deadline
from ..errors import InputError
from .chat_backends import ChatBackend, ChatReply, LocalChatBackend, OpenAIChatBackend, PromptRewriteError
from .instructions import revision_message, system_instructions, user_message

logger = logging.getLogger(__name__)

_PREFACE = re.compile(
    r"^\s*(?:(?:sure|okay|ok|certainly|of course)[,!.]?\s*)?"
    r"(?:here(?:'s| is| are)[^:\n]{0,80}:|(?:the\s+)?(?:rewritten|revised|final|improved|enhanced|corrected)"
    r"(?:\s+video)?\s+(?:prompt|caption|description)\s*:|(?:prompt|caption|output|answer|result)\s*:)\s*",
    re.IGNORECASE)
_QUOTES = [('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"), ("\u00ab", "\u00bb"), ("`", "`"),
           ("\u300c", "\u300d")]


def clean_rewrite(text: str) -> str:
    """Strip reasoning blocks, code fences, prefaces and surrounding quotes; one paragraph."""
    t = re.sub(r"<think>.*?</think>", " ", text or "", flags=re.DOTALL | re.IGNORECASE)
    t = re.sub(r"^.*?</think>", " ", t, flags=re.DOTALL | re.IGNORECASE)  # opening tag in the template
    t = re.sub(r"```[a-zA-Z]*\n?|```", " ", t).strip()
    for _ in range(3):
        before = t
        t = _PREFACE.sub("", t, count=1).strip()
        for open_q, close_q in _QUOTES:
            if len(t) >= 2 and t.startswith(open_q) and t.endswith(close_q):
                t = t[len(open_q):-len(close_q)].strip()
        t = t.strip("*_ ").strip()
        if t == before:
            break
    return re.sub(r"\s+", " ", t).strip()


def cap_words(text: str, max_words: int) -> str:
    """Cut ``text`` to at most ``max_words`` words, at the last sentence end when there is one."""
    words = text.split(" ")
    if len(words) <= max_words:
        return text
    head = " ".join(words[:max_words])
    cut = max(head.rfind(". "), head.rfind("! "), head.rfind("? "), head.rfind("."))
    capped = head[: cut + 1] if cut >= len(head) // 3 else head  # keep whole sentences when possible
    logger.info("rewritten prompt capped from %d to %d words", len(words), len(capped.split(" ")))
    return capped.strip()


def make_backend(backend: Union[str, ChatBackend, None], *, model: Optional[str] = None,
                 api_key: Optional[str] = None, timeout: float = 60.0, device: str = "cpu") -> ChatBackend:
    """A backend from a URL (OpenAI-compatible server), a local folder, or a backend object."""
    if backend is None:
        raise InputError("rewrite_prompt needs a backend: an OpenAI-compatible server URL such as "
                         "'http://127.0.0.1:8080' (llama.cpp server, vLLM, Ollama) or a local chat-model folder.")
    if not isinstance(backend, str):
        if not hasattr(backend, "chat"):
            raise InputError(f"backend must be a URL, a folder or an object with .chat(); found {type(backend).__name__}.")
        return backend
    if backend.strip().lower().startswith(("http://", "https://")):
        return OpenAIChatBackend(backend, model=model or "default", api_key=api_key, timeout=timeout)
    if os.path.isdir(backend):
        return LocalChatBackend(backend, device=device)
    raise InputError(f"rewrite backend {backend!r} is neither an http(s):// URL nor an existing model folder. "
                     f"Give the server address (e.g. http://127.0.0.1:11434 for Ollama) or a local folder.")


def _ask(backend: ChatBackend, system: str, user: str, *, temperature: float, seed: Optional[int],
         max_tokens: int, max_words: int, max_chars: int, stage: str, deadline: Deadline) -> str:
    if deadline.expired():
        raise PromptRewriteError(f"no time left for the {stage} with the rewrite model ({backend.name}): the whole "
                                 f"rewrite must finish within timeout={deadline.seconds:g} s; raise the timeout.")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    kw = dict(temperature=temperature, seed=seed, max_tokens=max_tokens)
    if isinstance(backend, OpenAIChatBackend):  # the one backend that waits on a server
        kw["deadline"] = deadline
    reply = backend.chat(messages, **kw)
    if not isinstance(reply, ChatReply) or not isinstance(reply.text, str):
        raise PromptRewriteError(f"the rewrite backend ({backend.name}) returned {type(reply).__name__} "
                                 f"{str(reply)[:100]!r}; expected a ChatReply whose text is a string.")
    text = clean_rewrite(reply.text)
    if not text:
        raise PromptRewriteError(
            f"the rewrite model ({backend.name}) returned an empty {stage} (raw answer {reply.text[:80]!r}). "
            f"Expected a rewritten prompt; check that the model is a chat/instruct model and its chat template.")
    if reply.finish_reason == "length" and len(text.split(" ")) > max_words:
        raise PromptRewriteError(
            f"the rewrite model ({backend.name}) did not finish its {stage}: it was cut at max_tokens={max_tokens} "
            f"after {len(text)} characters. Expected at most about {max_words} words; use a model that follows "
            f"instructions, or lower the temperature.")
    if len(text) > max_chars:
        raise PromptRewriteError(
            f"the rewrite model ({backend.name}) gave an over-long {stage}: {len(text)} characters, over the "
            f"limit of {max_chars} (about {max_words} words were asked for). Use a model that follows "
            f"instructions, or raise max_chars.")
    return cap_words(text, max_words)


def rewrite_prompt(prompt: str, mode: str = "normal", backend: Union[str, ChatBackend, None] = None, *,
                   model: Optional[str] = None, api_key: Optional[str] = None, self_revise: bool = True,
                   temperature: float = 0.0, seed: Optional[int] = 0, max_words: int = 120,
                   max_chars: int = 2000, max_tokens: int = 512, timeout: float = 60.0,
                   fallback_to_original: bool = False, device: str = "cpu") -> str:
    """Rewrite ``prompt`` for the video model and return the new prompt.

    ``mode``: "normal" (faithful, caption-like) or "master" (richer composition, light and camera).
    ``backend``: an OpenAI-compatible server URL (``model`` names the served model), a local
    transformers chat-model folder, or a :class:`ChatBackend`. ``temperature=0`` with a ``seed``
    makes the result deterministic. ``self_revise`` runs the comparison pass of the tech report.
    ``timeout`` bounds the whole rewrite (both passes, every connect and read). Errors
    (unreachable server, timeout, malformed, empty or over-long answer) raise
    :class:`PromptRewriteError`; with ``fallback_to_original=True`` they are logged and the
    original prompt is returned instead.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"rewrite_prompt needs a non-empty prompt string; found {prompt!r}.")
    system = system_instructions(mode, max_words)  # validates mode before any network call
    original = prompt.strip()
    deadline = Deadline(timeout)
    try:
        chat = make_backend(backend, model=model, api_key=api_key, timeout=timeout, device=device)
        kw = dict(temperature=temperature, seed=seed, max_tokens=max_tokens, max_words=max_words, max_chars=max_chars,
                  deadline=deadline)
        rewritten = _ask(chat, system, user_message(original), stage="rewrite", **kw)
        if self_revise:
            rewritten = _ask(chat, system_instructions_revision(max_words), revision_message(original, rewritten),
                             stage="self-revision", **kw)
    except PromptRewriteError as exc:
        if not fallback_to_original:
            raise
        logger.warning("prompt rewrite failed, using the original prompt (fallback_to_original=True): %s", exc)
        return original
    logger.info("prompt rewritten (%s): %r -> %r", mode, original[:60], rewritten[:60])
    return rewritten


def system_instructions_revision(max_words: int) -> str:
    from .instructions import REVISION_INSTRUCTIONS

    return REVISION_INSTRUCTIONS.format(max_words=max_words)
