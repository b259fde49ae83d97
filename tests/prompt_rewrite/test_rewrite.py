"""Prompt rewrite: real HTTP round trips on loopback against a server subprocess, a tiny local
transformers chat model, output cleaning and the error / fallback rules."""
import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

from hyvideo_core.errors import InputError
from hyvideo_core.prompt_rewrite import PromptRewriteError, clean_rewrite, rewrite_prompt
from hyvideo_core.prompt_rewrite.rewrite import cap_words

SERVER = Path(__file__).resolve().parent / "fake_chat_server.py"


@pytest.fixture(scope="module")
def chat_server():
    proc = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def received(url):
    with urllib.request.urlopen(url + "/requests", timeout=5) as r:
        return json.loads(r.read())


def test_http_round_trip_with_self_revision(chat_server):
    before = len(received(chat_server))
    out = rewrite_prompt("a red cat walks on grass", "normal", chat_server, model="echo", seed=7)
    assert out == "a red cat walks on grass, lit by soft evening light. The camera slowly pans left."
    reqs = received(chat_server)[before:]
    assert len(reqs) == 2  # rewrite + self-revision
    assert reqs[0]["temperature"] == 0.0 and reqs[0]["seed"] == 7 and reqs[0]["stream"] is False
    assert reqs[0]["messages"][0]["role"] == "system" and "one or two words" in reqs[0]["messages"][0]["content"]
    assert reqs[1]["messages"][1]["content"].startswith('ORIGINAL: "a red cat walks on grass"')


def test_master_mode_and_no_revision(chat_server):
    before = len(received(chat_server))
    out = rewrite_prompt("a dog", "master", chat_server + "/v1", model="echo", self_revise=False)
    assert out == "a dog, lit by soft evening light."
    reqs = received(chat_server)[before:]
    assert len(reqs) == 1 and "cinematographer" in reqs[0]["messages"][0]["content"]


def test_empty_and_over_long_answers(chat_server):
    with pytest.raises(PromptRewriteError, match="empty"):
        rewrite_prompt("a cat", backend=chat_server, model="empty")
    with pytest.raises(PromptRewriteError, match="did not finish|over-long"):
        rewrite_prompt("a cat", backend=chat_server, model="long")
    with pytest.raises(PromptRewriteError, match="not chat-completions JSON"):
        rewrite_prompt("a cat", backend=chat_server, model="badjson")
    with pytest.raises(PromptRewriteError, match="HTTP 500"):
        rewrite_prompt("a cat", backend=chat_server, model="http500")


def test_timeout(chat_server):
    with pytest.raises(PromptRewriteError, match="no answer within 0.5 s"):
        rewrite_prompt("a cat", backend=chat_server, model="slow", timeout=0.5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_and_fallback(caplog):
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(PromptRewriteError, match="cannot reach the rewrite server"):
        rewrite_prompt("a cat", backend=url)
    assert rewrite_prompt("  a cat  ", backend=url, fallback_to_original=True) == "a cat"
    assert "fallback_to_original" in caplog.text


def test_bad_arguments():
    with pytest.raises(InputError, match="'normal' or 'master'"):
        rewrite_prompt("a cat", "fancy", "http://127.0.0.1:1")
    with pytest.raises(InputError, match="needs a backend"):
        rewrite_prompt("a cat")
    with pytest.raises(InputError, match="neither an http"):
        rewrite_prompt("a cat", backend="/no/such/folder")
    with pytest.raises(InputError, match="non-empty prompt"):
        rewrite_prompt("   ", backend="http://127.0.0.1:1")


@pytest.mark.parametrize("raw, clean", [
    ('Sure! Here is the rewritten prompt:\n\n"A red cat walks."', "A red cat walks."),
    ("<think>the user wants...</think>\nRewritten prompt: \u201cA dog runs.\u201d", "A dog runs."),
    ("```\nA cat\non a mat\n```", "A cat on a mat"),
    ("Final prompt: **A cat.**", "A cat."),
    ("'A bird flies.'", "A bird flies."),
])
def test_clean_rewrite(raw, clean):
    assert clean_rewrite(raw) == clean


def test_cap_words_cuts_at_sentence():
    text = "One two three. Four five six seven eight nine ten."
    assert cap_words(text, 6) == "One two three."
    assert cap_words(text, 50) == text


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("chat_model")
    words = "a the cat dog red blue walks runs on grass street light soft camera pans left night".split()
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "<pad>", *words])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  unk_token="<unk>")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant {% endif %}")
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=3))
    model.generation_config.eos_token_id = None  # a random model: let it speak until max_tokens
    model.save_pretrained(folder)
    return folder


def test_local_backend_is_deterministic(tiny_chat_model):
    kw = dict(mode="normal", backend=str(tiny_chat_model), max_tokens=12, max_words=60)
    first = rewrite_prompt("a red cat", temperature=0.0, **kw)
    assert isinstance(first, str) and first
    assert rewrite_prompt("a red cat", temperature=0.0, **kw) == first
    sampled = rewrite_prompt("a red cat", temperature=1.0, seed=3, **kw)
    assert rewrite_prompt("a red cat", temperature=1.0, seed=3, **kw) == sampled


def test_local_backend_missing_folder(tmp_path):
    with pytest.raises(PromptRewriteError, match="no config.json"):
        rewrite_prompt("a cat", backend=str(tmp_path))
    assert rewrite_prompt("a cat", backend=str(tmp_path), fallback_to_original=True) == "a cat"
