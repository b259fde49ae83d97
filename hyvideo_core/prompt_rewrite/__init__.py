"""Prompt rewriting for HunyuanVideo (normal / master modes plus a self-revision pass).

Public API (module path for ``hyvideo_core.__init__._EXPORTS``)::

    from hyvideo_core.prompt_rewrite.rewrite import rewrite_prompt
"""
from __future__ import annotations

from .chat_backends import ChatReply, LocalChatBackend, OpenAIChatBackend, PromptRewriteError
from .rewrite import clean_rewrite, rewrite_prompt

__all__ = ["rewrite_prompt", "clean_rewrite", "OpenAIChatBackend", "LocalChatBackend", "PromptRewriteError",
           "ChatReply"]
