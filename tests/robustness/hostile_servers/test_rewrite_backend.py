"""rewrite_prompt's OpenAI-compatible backend against misbehaving chat servers on loopback.

Every case must raise PromptRewriteError (so ``fallback_to_original=True`` returns the original
prompt instead) within ``timeout`` + 2 s, allocating at most 64 MB on the way.
"""
import json
import re
import time
import tracemalloc

import pytest
from hostile_server import chunked, drip, endless, head, hold, reset, send_body, send_json

from hyvideo_core.prompt_rewrite import PromptRewriteError, rewrite_prompt

pytestmark = pytest.mark.robustness

TIMEOUT = 1.0
SLACK = 2.0
MEMORY_SLACK = 64 << 20
ROUTE = ("POST", "/v1/chat/completions")
PROMPT = "a red cat walks on grass"


def reply(content, finish="stop"):
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}]}


def answer(payload):
    return lambda c, r: send_json(c, 200, payload)


def second_request_drips(conn, req):
    """The rewrite is answered at once; the self-revision only drips."""
    if len(req.server.requests) == 1:
        send_json(conn, 200, reply("a red cat walks on green grass"))
    else:
        drip(conn, req, head(200, {"Content-Length": 10 ** 5}) + b" " * 10 ** 5)


# id: (route, what the error says)
CASES = {
    "never_answers": (lambda c, r: hold(r), "no answer within"),
    "status_line_drips": (lambda c, r: drip(c, r, b"HTTP/1.1 200 OK\r\n" * 50), "no answer within"),
    "body_drips": (lambda c, r: drip(c, r, head(200, {"Content-Length": 10 ** 5}) + b" " * 10 ** 5),
                   "no answer within"),
    "self_revision_drips": (second_request_drips, "no answer within|no time left"),
    "endless_body": (lambda c, r: (c.sendall(head(200, {"Connection": "close"}) + b'{"choices": "'),
                                   endless(c, r, b"a" * (1 << 16))), "over the limit"),
    "endless_chunks": (lambda c, r: (c.sendall(head(200, {"Transfer-Encoding": "chunked"})),
                                     endless(c, r, b" " * (1 << 16), frame=chunked)), "over the limit"),
    "declares_a_petabyte": (lambda c, r: (c.sendall(head(200, {"Content-Length": 10 ** 15}) + b"{"), hold(r)),
                            "announces"),
    "garbage_json": (lambda c, r: send_body(c, 200, b'{"choices": [{"message": '), "not chat-completions JSON"),
    "html_instead_of_json": (lambda c, r: send_body(c, 200, b"<html>It works!</html>", "text/html"),
                             "not chat-completions JSON"),
    "answer_is_a_list": (answer([reply("a cat")]), "not chat-completions JSON"),
    "choices_empty": (answer({"choices": []}), "not chat-completions JSON"),
    "choices_not_objects": (answer({"choices": ["a cat"]}), "not chat-completions JSON"),
    "content_is_a_list": (answer(reply(["a red cat", "on grass"])), "list .* not text"),
    "content_is_a_number": (answer(reply(12345)), "int .* not text"),
    "content_is_an_object": (answer(reply({"text": "a cat"})), "dict .* not text"),
    "content_missing": (answer({"choices": [{"message": {"role": "assistant"}}]}), "NoneType .* not text"),
    "content_empty": (answer(reply("")), "empty"),
    "content_blank": (answer(reply(" \n\t ")), "empty"),
    "http_500": (lambda c, r: send_body(c, 500, b"<html>Internal Server Error</html>", "text/html"), "HTTP 500"),
    "closed_without_answer": (lambda c, r: None, "cannot reach"),
    "reset_mid_body": (lambda c, r: (c.sendall(head(200, {"Content-Length": 1000}) + b'{"choices": ['),
                                     time.sleep(0.1), reset(c)), "cannot reach"),
    "bad_status_line": (lambda c, r: (c.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), hold(r)), "not valid HTTP"),
    "endless_header_line": (lambda c, r: (c.sendall(b"HTTP/1.1 200 OK\r\nX-Long: "), endless(c, r, b"a" * (1 << 16))),
                            "not valid HTTP"),
    "thousand_headers": (lambda c, r: (c.sendall(head(200, {f"X-{i}": i for i in range(1000)})), hold(r)),
                         "not valid HTTP"),
}


def timed_rewrite(url, **kw):
    """(result or exception, seconds, peak bytes allocated)."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        outcome = rewrite_prompt(PROMPT, "normal", url, model="m", timeout=TIMEOUT, **kw)
    except Exception as exc:  # the test looks at which class it is
        outcome = exc
    elapsed = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, elapsed, peak


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_chat_server(case, serve):
    route, says = CASES[case]
    server = serve({ROUTE: route})
    outcome, elapsed, peak = timed_rewrite(server.url)
    assert isinstance(outcome, PromptRewriteError), repr(outcome)
    assert re.search(says, str(outcome)), str(outcome)
    assert elapsed <= TIMEOUT + SLACK, elapsed
    assert peak <= MEMORY_SLACK, f"{peak >> 20} MiB allocated"


@pytest.mark.parametrize("case", list(CASES))
def test_fallback_to_original_on_a_hostile_chat_server(case, serve, caplog):
    server = serve({ROUTE: CASES[case][0]})
    outcome, elapsed, _ = timed_rewrite(server.url, fallback_to_original=True)
    assert outcome == PROMPT, repr(outcome)
    assert elapsed <= TIMEOUT + SLACK, elapsed
    assert "fallback_to_original" in caplog.text


def test_api_key_is_not_sent_across_a_redirect(serve):
    """A redirect to another address (127.0.0.2) is not followed: the key reaches only the server
    the caller named, and the error says where the redirect pointed."""
    other = serve({("GET", "/"): answer(reply("stolen")), ROUTE: answer(reply("stolen"))}, host="127.0.0.2")
    server = serve({ROUTE: lambda c, r: send_body(c, 302, b"", extra={"Location": other.url + "/v1/chat/completions"})})
    outcome, elapsed, _ = timed_rewrite(server.url, api_key="sk-secret")
    assert isinstance(outcome, PromptRewriteError) and "redirect" in str(outcome) and other.url in str(outcome)
    assert server.requests[0].headers.get("authorization") == "Bearer sk-secret"  # the named server got it
    assert other.requests == [], [(r.method, r.path, r.headers.get("authorization")) for r in other.requests]
    assert elapsed <= TIMEOUT + SLACK


def test_well_behaved_server_still_works(serve):
    """The same harness with a good server: both passes answered, the result is the revision."""
    server = serve({ROUTE: answer(reply('Here is the rewritten prompt: "A red cat walks on green grass."'))})
    outcome, elapsed, _ = timed_rewrite(server.url)
    assert outcome == "A red cat walks on green grass."
    assert len(server.requests) == 2 and json.loads(server.requests[0].body)["stream"] is False


# id: (route, trust the test certificate, what the error says; None: the rewrite works)
HTTPS_CASES = {
    "https_well_behaved": (answer(reply("A red cat walks on green grass.")), True, None),
    "https_body_drips": (CASES["body_drips"][0], True, "no answer within"),
    "https_never_answers": (lambda c, r: hold(r), True, "no answer within"),
    "https_untrusted_certificate": (answer(reply("A red cat.")), False, "cannot reach.*CERTIFICATE_VERIFY_FAILED"),
}


@pytest.mark.parametrize("case", list(HTTPS_CASES))
def test_https_chat_server(case, serve, tls_server_context, monkeypatch):
    route, trusted, says = HTTPS_CASES[case]
    context, cert = tls_server_context
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by the default context when it is made
    server = serve({ROUTE: route}, tls=context)
    outcome, elapsed, _ = timed_rewrite(server.url)
    if says is None:
        assert outcome == "A red cat walks on green grass."
    else:
        assert isinstance(outcome, PromptRewriteError) and re.search(says, str(outcome)), repr(outcome)
    assert elapsed <= TIMEOUT + SLACK, elapsed


def test_tls_handshake_that_never_ends(serve):
    """A server that accepts TCP but never answers the TLS hello: the deadline covers the handshake."""
    server = serve({})
    outcome, elapsed, _ = timed_rewrite(server.url.replace("http://", "https://"))
    assert isinstance(outcome, PromptRewriteError) and "no answer within" in str(outcome), repr(outcome)
    assert elapsed <= TIMEOUT + SLACK, elapsed
