"""LLM requests: a whole-request deadline (a slow-drip server is cut), null or non-string
content re-asked, and captions over the length cap re-asked with the cap named."""
import json
import socket
import threading
import time

import pytest

from handx_jax.annotate import reasoner_llm
from handx_jax.annotate.reasoner_llm import LLMConfig, LLMError, LLMReasoner

from tests.annotate.fake_llm import good_answer

EVENTS = {"clip": "x", "events": []}


class DripServer:
    """Reads a request, sends `instant` at once, then `drip` one byte per `every` seconds."""

    def __init__(self, instant: bytes, drip: bytes, every: float = 1.0):
        self.instant, self.drip, self.every = instant, drip, every
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(self.instant)
            for byte in self.drip:
                if self.stop.is_set():
                    break
                time.sleep(self.every)
                conn.sendall(bytes([byte]))
        except OSError:
            pass  # the client cut the connection: what the test wants
        finally:
            conn.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.sock.close()


def _reply(content) -> bytes:
    return json.dumps({"choices": [{"message": {"content": content}}]}).encode()


@pytest.mark.parametrize("where", ["body", "headers"])
def test_slow_drip_is_cut_at_the_deadline(where):
    """One byte a second: every socket read succeeds, yet the request ends at 2 s."""
    body = _reply(good_answer("drip"))
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    instant, drip = (head, body) if where == "body" else (b"", head + body)
    with DripServer(instant, drip[:12], every=1.0) as server:
        client = reasoner_llm.ChatClient(LLMConfig(url=server.url, timeout=2.0, max_retries=0))
        start = time.monotonic()
        with pytest.raises(LLMError, match="deadline of 2s exceeded"):
            client.chat([{"role": "user", "content": "hi"}])
        elapsed = time.monotonic() - start
    assert 1.9 <= elapsed < 3.0, elapsed


def test_fast_answer_within_the_deadline_is_read_whole():
    body = _reply(good_answer("fast"))
    head = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    with DripServer(head + body, b"") as server:
        client = reasoner_llm.ChatClient(LLMConfig(url=server.url, timeout=5.0, max_retries=0))
        assert client.chat([{"role": "user", "content": "hi"}]) == good_answer("fast")


class ScriptedClient:
    """Stands in for ChatClient: returns the scripted contents in order, records messages."""

    def __init__(self, contents):
        self.contents = list(contents)
        self.seen = []
        self.requests = 0

    def chat(self, messages):
        self.seen.append(messages)
        self.requests += 1
        return self.contents.pop(0)


def _reasoner(contents, **config):
    reasoner = LLMReasoner(LLMConfig(**config), template="<<EVENTS_JSON>>")
    reasoner.client = ScriptedClient(contents)
    return reasoner


@pytest.mark.parametrize("bad", [None, 7, {"left": "x"}, ["a"]])
def test_null_or_non_string_content_is_asked_again(bad):
    reasoner = _reasoner([bad, good_answer("ok")])
    triplets = reasoner.describe(EVENTS)
    assert triplets[0]["left"] == "left ok 0"
    assert reasoner.client.requests == 2
    assert "not a string" in reasoner.client.seen[1][-1]["content"]


def test_null_content_retries_are_bounded():
    reasoner = _reasoner([None, None, None], max_format_retries=2)
    with pytest.raises(LLMError, match="not a string"):
        reasoner.describe(EVENTS)
    assert reasoner.client.requests == 3


def test_over_long_caption_is_asked_again_naming_the_cap():
    long = json.loads(good_answer("long"))
    long[2]["right"] = "x" * 5000
    reasoner = _reasoner([json.dumps(long), good_answer("ok")], max_caption_chars=120)
    assert reasoner.describe(EVENTS)[2]["right"] == "right ok 2"
    retry = reasoner.client.seen[1][-1]["content"]
    assert "item 3 field 'right' has 5000 characters; the limit is 120" in retry
    assert "at most 120 characters" in retry


def test_caption_cap_default_and_limit():
    long = json.loads(good_answer("a"))
    long[0]["left"] = "y" * (reasoner_llm.MAX_CAPTION_CHARS + 1)
    with pytest.raises(reasoner_llm.CaptionFormatError, match="the limit is 400"):
        reasoner_llm.parse_captions(json.dumps(long))
    long[0]["left"] = "y" * reasoner_llm.MAX_CAPTION_CHARS
    assert len(reasoner_llm.parse_captions(json.dumps(long))[0]["left"]) == 400
    with pytest.raises(ValueError, match="timeout"):
        LLMConfig(timeout=0)
