"""A scripted OpenAI-compatible chat server on 127.0.0.1 for driving litellm in tests.

Each POST to ``/v1/chat/completions`` takes the next ``Reply`` from the script (or
``Server.default`` once the script is used up) and streams it as SSE chunks exactly as
OpenAI does: text, ``reasoning_content``, tool-call deltas split across chunks, a
``finish_reason`` chunk and a final usage chunk. Replies can also stall or fail with an
HTTP status, or misbehave like a broken provider or proxy: chunks with no choices at all
(``no_choices``), exact objects of the test's own (``raw``), or a plain JSON body instead of
a stream (``json_body``). Every request body is recorded in ``Server.requests``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One scripted tool call. ``arguments`` is sent verbatim (it may be malformed JSON)."""

    id: str
    name: str
    arguments: str


@dataclass
class Reply:
    """One scripted model response."""

    text: str = ""
    reasoning: str = ""
    calls: tuple[Call, ...] = ()
    usage: tuple[int, int] | None = (10, 5)
    finish_reason: str | None = None  # default: "tool_calls" when calls, else "stop"
    status: int = 200  # non-200: an error body instead of a stream
    stall_after_chunks: int | None = None  # stop sending (keep the connection open) after N chunks
    split: int = 3  # pieces per text / argument string
    delay_s: float = 0.0  # pause between chunks
    no_choices: bool = False  # every chunk has ``choices: []`` (then the usage chunk, if any)
    json_body: dict[str, Any] | None = None  # answer with this JSON object (application/json), no stream
    raw: tuple[dict[str, Any], ...] | None = None  # stream exactly these objects as SSE data, then [DONE]


def _pieces(text: str, n: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, n)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def reply_chunks(reply: Reply, model: str = "scripted") -> list[dict[str, Any]]:
    """The OpenAI ``chat.completion.chunk`` objects for one reply, in order."""
    base = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    if reply.raw is not None:
        return [dict(obj) for obj in reply.raw]
    if reply.no_choices:
        out = [{**base, "choices": []} for _ in range(2)]
        if reply.usage is not None:
            prompt, completion = reply.usage
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            out.append({**base, "choices": [], "usage": usage})
        return out
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": p}) for p in _pieces(reply.reasoning, reply.split)]
    out += [chunk({"content": p}) for p in _pieces(reply.text, reply.split)]
    for index, call in enumerate(reply.calls):
        head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        out.append(chunk({"tool_calls": [head]}))
        for piece in _pieces(call.arguments, reply.split):
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
    finish = reply.finish_reason or ("tool_calls" if reply.calls else "stop")
    out.append(chunk({}, finish))
    if reply.usage is not None:
        prompt, completion = reply.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        out.append({**base, "choices": [], "usage": usage})
    return out


@dataclass
class Server:
    """The running server: ``base_url`` for litellm's ``api_base``, the script and what it received."""

    script: list[Reply] = field(default_factory=list)
    default: Callable[[int], Reply] | None = None  # reply for request i once the script is used up
    by_request: Callable[[dict[str, Any]], Reply] | None = None  # reply chosen from the request body itself
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers (lower-case names)
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closing: threading.Event = field(default_factory=threading.Event)

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            index = len(self.requests) - 1
            if self.script:
                return self.script.pop(0)
        if self.by_request is not None:
            return self.by_request(body)
        if self.default is None:
            return Reply(status=500, text="script exhausted")
        return self.default(index)


def _frames(reply: Reply, model: str, closing: threading.Event) -> Iterator[bytes]:
    """The SSE frames of one streamed reply, paced as scripted, ``[DONE]`` last; a stall holds the
    connection open without sending anything (until the server closes) and sends no ``[DONE]``."""
    for n, chunk in enumerate(reply_chunks(reply, model)):
        if reply.stall_after_chunks is not None and n >= reply.stall_after_chunks:
            closing.wait(30)
            return
        if reply.delay_s:
            time.sleep(reply.delay_s)
        yield f"data: {json.dumps(chunk)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else every chunk waits for a delayed ACK (+40 ms)

        def log_message(self, *_args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            server.headers.append({k.lower(): v for k, v in self.headers.items()})
            reply = server.next_reply(body)
            if reply.status != 200:
                self._send_error(reply)
            elif reply.json_body is not None:
                self._send_json(reply.json_body)
            else:
                self._stream(reply, body.get("model", "scripted"))

        def _stream(self, reply: Reply, model: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            for frame in _frames(reply, model, server._closing):
                if not self._write(frame):
                    return

        def _write(self, data: bytes) -> bool:
            try:
                self.wfile.write(data)
                self.wfile.flush()
                return True
            except (BrokenPipeError, ConnectionResetError):
                return False

        def _send_json(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self._write(data)

        def _send_error(self, reply: Reply) -> None:
            data = json.dumps({"error": {"message": reply.text or "scripted failure", "type": "server_error"}}).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self._write(data)

    return Handler


class _Http(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(
    script: list[Reply] | None = None,
    default: Callable[[int], Reply] | None = None,
    by_request: Callable[[dict[str, Any]], Reply] | None = None,
) -> Iterator[Server]:
    """Run a scripted server on a random 127.0.0.1 port for the duration of the ``with`` block."""
    state = Server(script=list(script or []), default=default, by_request=by_request)
    httpd = _Http(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state._closing.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class scripted_server:
    """Context manager form of ``serve``."""

    def __init__(self, script: list[Reply] | None = None, default: Callable[[int], Reply] | None = None) -> None:
        self._gen = serve(script, default)

    def __enter__(self) -> Server:
        return next(self._gen)

    def __exit__(self, *_exc: object) -> None:
        self._gen.close()
