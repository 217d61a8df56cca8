"""A chat-completions server on 127.0.0.1 (port 0) that misbehaves on a script.

Each distinct clip prompt (the first user message) walks through `script`, one step per
request: "slow" (answer after the client's timeout), "429", "500", "truncated" (the
connection closes mid-body), "malformed" (not JSON),
"wrong_count" (four objects), "ok" (a valid answer). Past the end it answers "ok", unless
`fail_after` (count of clips answered) or `fail_always` (a predicate on the prompt) say to
answer 500 forever. Every request is counted, per clip and in total.
"""

import hashlib
import http.server
import json
import threading
import time


def good_answer(tag):
    return json.dumps([{"left": f"left {tag} {k}", "right": f"right {tag} {k}",
                        "two_hands_relation": f"relation {tag} {k}"} for k in range(5)])


class FakeLLM:
    def __init__(self, script=(), slow_seconds=1.0, fail_after=None, fail_always=None,
                 delay=0.0):
        self.script = list(script)
        self.slow_seconds = slow_seconds
        self.fail_after = fail_after
        self.fail_always = fail_always
        self.requests = 0
        self.delay = delay  # seconds every answer takes (to observe concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_clip = {}
        self.answered = set()
        self.bodies = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                self.counted = True
                try:
                    time.sleep(owner.delay)
                    owner._handle(self, body)
                finally:
                    owner._done(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _done(self, handler):
        """The request stops counting as in flight before its answer goes out: once the
        client reads the answer it may send its next request at once, and that one must
        not overlap this one in the count."""
        with self.lock:
            if getattr(handler, "counted", False):
                handler.counted = False
                self.in_flight -= 1

    def _send(self, handler, code, payload: bytes):
        self._done(handler)
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        try:
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, handler, body):
        prompt = body["messages"][0]["content"]
        clip = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        with self.lock:
            self.requests += 1
            self.bodies.append(body)
            step_index = self.per_clip.get(clip, 0)
            self.per_clip[clip] = step_index + 1
            permanent = (self.fail_always is not None and self.fail_always(prompt)) or (
                self.fail_after is not None and clip not in self.answered
                and len(self.answered) >= self.fail_after)
        step = self.script[step_index] if step_index < len(self.script) else "ok"
        if permanent:
            step = "500"
        if step == "slow":
            time.sleep(self.slow_seconds)
            step = "ok"
        if step == "truncated":
            self._done(handler)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", "1000")
            handler.end_headers()
            handler.wfile.write(b'{"choices": [')
            handler.close_connection = True
            return
        if step in ("429", "500"):
            self._send(handler, int(step), b'{"error": "try later"}')
            return
        content = {"ok": good_answer(clip), "malformed": "Sure! Here are captions: [{left:",
                   "wrong_count": json.dumps(json.loads(good_answer(clip))[:4])}[step]
        if step == "ok":
            with self.lock:
                self.answered.add(clip)
        payload = {"id": "x", "object": "chat.completion",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop"}]}
        self._send(handler, 200, json.dumps(payload).encode())
