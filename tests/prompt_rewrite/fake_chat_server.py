"""A tiny OpenAI-compatible chat-completions server for the rewrite tests (run as a subprocess).

Prints its port on the first stdout line. The requested ``model`` selects the behaviour:
``echo`` (a rewrite wrapped in a preface and quotes), ``empty``, ``slow`` (sleeps 5 s),
``long`` (rambles until max_tokens), ``badjson``, ``http500``. ``GET /requests`` returns every
request body received so far.
"""
import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED = []


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, payload, raw=False):
        body = payload if raw else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/requests":
            self._send(200, RECEIVED)
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self._send(404, {"error": f"no route {self.path}"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        RECEIVED.append(body)
        model, user = body.get("model"), body["messages"][-1]["content"]
        finish = "stop"
        if model == "echo":
            if user.startswith("ORIGINAL:"):
                rewritten = re.search(r'REWRITTEN: "(.*)"', user).group(1)
                text = f"Final prompt: {rewritten} The camera slowly pans left."
            else:
                prompt = re.search(r'User prompt: "(.*)"', user).group(1)
                text = f'Sure! Here is the rewritten prompt:\n\n"{prompt}, lit by soft evening light."'
        elif model == "empty":
            text = "  \n"
        elif model == "slow":
            time.sleep(5)
            text = "too late"
        elif model == "long":
            text, finish = "word " * 3000, "length"
        elif model == "badjson":
            self._send(200, b"<html>not json</html>", raw=True)
            return
        elif model == "http500":
            self._send(500, {"error": "model crashed"})
            return
        else:
            text = "unknown model"
        self._send(200, {"id": "x", "object": "chat.completion", "model": model,
                         "choices": [{"index": 0, "finish_reason": finish,
                                      "message": {"role": "assistant", "content": text}}]})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
