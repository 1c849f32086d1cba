"""OpenAI-compatible chat servers for the tests: an in-process fake, a fault-injecting proxy, `transformers serve`.

Each listens on 127.0.0.1 and a free port, counts the requests it answers,
records their headers, and can be told to fail: a queue of faults ("429",
"500", "hang", "drop", and answers with status 200 that are no chat completion:
"html", a gateway's page; "not-json", a body sent as JSON that is not; "error", an
error object instead of choices; "no-choices"; "choices-not-a-list"; and "401-echo", a refusal whose
long message ends with the key it was sent) is consumed one per request, and
``down`` drops every connection (a server that died) until it is cleared.
"""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

POSITIVE = {"great", "loved", "best", "fun", "good", "funny", "delight", "delightful"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Answers with status 200 that are no chat completion: (body, content type).
MALFORMED = {
    "html": (b"<html><body>502 Bad Gateway</body></html>", "text/html"),
    "not-json": (b'{"choices": [', "application/json"),
    "error": (b'{"error": {"message": "model overloaded"}}', "application/json"),
    "no-choices": (
        b'{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}',
        "application/json",
    ),
    "choices-not-a-list": (b'{"id": "x", "object": "chat.completion", "choices": {"0": {}}}', "application/json"),
}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._reply(*self.server.owner.get(self.path))

    def do_POST(self):
        owner = self.server.owner
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with owner.lock:
            owner.headers.append({k.lower(): v for k, v in self.headers.items()})
            owner.bodies.append(body)
            fault = owner.faults.pop(0) if owner.faults else None
            if owner.down:
                fault = "drop"
            owner.in_flight += 1
            owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
        try:
            if fault == "drop":
                # A server that died: the connection closes without an answer.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "hang":
                time.sleep(owner.hang_seconds)
                return
            if fault == "429":
                self._reply(429, {"error": {"message": "Rate limit reached", "type": "requests"}}, owner.retry_after)
                return
            if fault in MALFORMED:
                data, kind = MALFORMED[fault]
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if fault == "401-echo":  # the key across the 300th character of the error's text, where it is cut
                key = self.headers.get("authorization", "").split()[-1]
                self._reply(401, {"error": {"message": "x" * 230 + f" invalid key {key}", "type": "auth"}})
                return
            if fault == "500":
                self._reply(500, {"error": {"message": "The server had an error", "type": "server_error"}})
                return
            status, payload = owner.post(self.path, body, dict(self.headers))
            with owner.lock:
                if status == 200:
                    owner.answered += 1
            self._reply(status, payload)
        finally:
            with owner.lock:
                owner.in_flight -= 1

    def _reply(self, status, payload, retry_after=None):
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if retry_after is not None:
                self.send_header("retry-after", str(retry_after))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server:
    """The HTTP side shared by the fake and the proxy."""

    def __init__(self):
        self.lock = threading.Lock()
        self.headers, self.bodies, self.faults = [], [], []
        self.answered = self.in_flight = self.max_in_flight = 0
        self.down = False
        self.retry_after = None
        self.hang_seconds = 3.0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def messages(self):
        """The messages of every request received, in order."""
        return [json.loads(b)["messages"] for b in self.bodies]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def sentiment(messages):
    """The fake's answer: "pos" when the last user message has a positive word, else "neg"."""
    last = [m["content"] for m in messages if m["role"] == "user"][-1]
    return "pos" if set(last.lower().replace(".", " ").split()) & POSITIVE else "neg"


class FakeChat(_Server):
    """Answers chat completions in-process with ``answer(messages)``; with ``logprobs``, also the alternatives.

    ``logprobs`` maps the request to the first token's alternatives, a list of
    ``(token, logprob)``; the endpoint then returns them when asked (none for that answer
    where it gives None, as for a refused or filtered one).
    """

    def __init__(self, answer=sentiment, logprobs=None):
        self.answer = answer
        self.logprobs = logprobs
        super().__init__()

    def get(self, path):
        return 200, {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "tests"}]}

    def post(self, path, body, headers):
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"No route {path}", "type": "not_found"}}
        request = json.loads(body)
        text = self.answer(request["messages"])
        choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        top = self.logprobs(request["messages"]) if request.get("logprobs") and self.logprobs is not None else None
        if top is not None:
            top = top[: request.get("top_logprobs", 1)]
            entry = {"token": top[0][0], "logprob": top[0][1], "bytes": None}
            entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
            choice["logprobs"] = {"content": [entry]}
        n_prompt = sum(len(m["content"].split()) for m in request["messages"])
        usage = {"prompt_tokens": n_prompt, "completion_tokens": len(text.split()), "total_tokens": 0}
        return 200, {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": request["model"],
            "choices": [choice],
            "usage": usage,
        }


class FaultProxy(_Server):
    """Forwards every request to ``upstream`` (a ``.../v1`` URL), counting them and injecting the faults asked."""

    def __init__(self, upstream):
        self.upstream = upstream.split("://", 1)[1].split("/", 1)[0]
        super().__init__()

    def _forward(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection(self.upstream, timeout=600)
        try:
            keep = {k: v for k, v in (headers or {}).items() if k.lower() in ("content-type", "authorization")}
            conn.request(method, path, body=body, headers=keep)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()

    def get(self, path):
        return self._forward("GET", path)

    def post(self, path, body, headers):
        return self._forward("POST", path, body, headers)


class TransformersServe:
    """``transformers serve FOLDER`` on 127.0.0.1 and a free port, on the CPU; ``close()`` stops it."""

    def __init__(self, folder, startup_timeout=240):
        self.folder = str(folder)
        self.port = free_port()
        self.log = Path(os.environ.get("TMPDIR", "/tmp")) / f"skllm-transformers-serve-{self.port}.log"
        exe = Path(sys.executable).with_name("transformers")
        command = [str(exe), "serve", self.folder, "--host", "127.0.0.1", "--port", str(self.port), "--device", "cpu"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=5) as r:
                    self.model = json.loads(r.read())["data"][0]["id"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"transformers serve did not start in {startup_timeout} s") from None
                time.sleep(1.0)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
