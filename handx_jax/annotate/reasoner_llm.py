"""LLM reasoner over any OpenAI-compatible chat-completions endpoint (standard library only).

Robust by construction: answers are parsed strictly and validated (exactly five objects
with non-empty string fields `left`, `right`, `two_hands_relation`, each at most
`max_caption_chars` long); a malformed answer (also `null` or non-string content) is asked
again with the validation error, up to a limit; each request has a whole-request deadline
(`timeout`: connecting, sending and reading the whole answer, however slowly it drips);
timeouts, HTTP 429 and 5xx are retried with exponential backoff and jitter; answers are
cached on disk under the sha256 of (event JSON, prompt template, model), so a rerun asks
nothing twice. The API key comes from an environment variable whose name is given, never
from a file. HTTP(S) proxies named by the usual environment variables are honoured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import random
import socket
from handx_jax import atomic
import threading
import time
import urllib.parse
import urllib.request
from importlib import resources

TRIPLET_KEYS = ("left", "right", "two_hands_relation")
NUM_TRIPLETS = 5
PLACEHOLDER = "<<EVENTS_JSON>>"
MAX_CAPTION_CHARS = 400  # default cap on one caption's length (characters)
MAX_RESPONSE_BYTES = 8 << 20  # an answer body larger than this is refused


class CaptionFormatError(ValueError):
    """An answer that is not exactly five well-formed caption objects."""


class LLMError(RuntimeError):
    """The endpoint could not give a valid answer within the retry limits."""


def load_template(path: str | None = None) -> str:
    """The prompt template: a file if given, else the one shipped in the package."""
    if path:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    else:
        text = resources.files("handx_jax.annotate").joinpath("prompt_template.txt").read_text(
            encoding="utf-8")
    if PLACEHOLDER not in text:
        raise ValueError(f"prompt template {path or '(packaged)'} lacks {PLACEHOLDER}")
    return text


def render_prompt(template: str, events: dict) -> str:
    return template.replace(PLACEHOLDER, json.dumps(events, indent=1))


def cache_key(events: dict, template: str, model: str) -> str:
    """sha256 of (event JSON, prompt template, model)."""
    payload = json.dumps({"events": events, "template": template, "model": model},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_captions(text, max_chars: int | None = MAX_CAPTION_CHARS) -> list[dict[str, str]]:
    """Strictly parse an answer into five triplets; raise CaptionFormatError saying why.

    Captions longer than `max_chars` characters (None: no cap) are refused.
    """
    if not isinstance(text, str):
        raise CaptionFormatError(f"message content is {type(text).__name__}, not a string")
    body = text.strip()
    if body.startswith("```"):  # tolerate one fenced block, nothing else around it
        lines = body.splitlines()
        if len(lines) < 2 or not lines[-1].strip().startswith("```"):
            raise CaptionFormatError("unterminated ``` block")
        body = "\n".join(lines[1:-1]).strip()
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise CaptionFormatError(f"not valid JSON: {err}") from None
    if not isinstance(data, list):
        raise CaptionFormatError(f"expected a JSON list, got {type(data).__name__}")
    if len(data) != NUM_TRIPLETS:
        raise CaptionFormatError(f"expected exactly {NUM_TRIPLETS} objects, got {len(data)}")
    out = []
    for k, item in enumerate(data):
        if not isinstance(item, dict):
            raise CaptionFormatError(f"item {k + 1} is {type(item).__name__}, not an object")
        if set(item) != set(TRIPLET_KEYS):
            raise CaptionFormatError(f"item {k + 1} has keys {sorted(item)}, expected exactly "
                                     f"{list(TRIPLET_KEYS)}")
        for key in TRIPLET_KEYS:
            if not isinstance(item[key], str) or not item[key].strip():
                raise CaptionFormatError(f"item {k + 1} field {key!r} is not a non-empty string")
            if max_chars is not None and len(item[key].strip()) > max_chars:
                raise CaptionFormatError(
                    f"item {k + 1} field {key!r} has {len(item[key].strip())} characters; "
                    f"the limit is {max_chars}")
        out.append({key: item[key].strip() for key in TRIPLET_KEYS})
    return out


class DiskCache:
    """One JSON file per key under `directory/ab/abcdef....json`, written atomically."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + ".json")

    def get(self, key: str):
        try:
            with open(self._path(key), encoding="utf-8") as fh:
                return json.load(fh)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, value) -> None:
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = atomic.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False)
        os.replace(tmp, path)


@dataclasses.dataclass
class LLMConfig:
    url: str = "http://127.0.0.1:8000/v1/chat/completions"
    model: str = "gpt-4o-mini"
    key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0  # seconds for a whole request (connect, send, read all)
    max_retries: int = 5  # transport retries per request (timeouts, 429, 5xx)
    max_format_retries: int = 2  # re-asks after a malformed answer
    backoff: float = 1.0  # first backoff in seconds; doubles each retry
    max_backoff: float = 30.0
    temperature: float = 0.7
    seed: int = 0
    max_caption_chars: int = MAX_CAPTION_CHARS  # longer captions are re-asked

    def __post_init__(self):
        if not (self.timeout > 0 and self.timeout < float("inf")):
            raise ValueError(f"LLM timeout must be a positive number of seconds, got "
                             f"{self.timeout}")
        if self.max_retries < 0 or self.max_format_retries < 0:
            raise ValueError("LLM retry counts must be >= 0")
        if self.max_caption_chars < 1:
            raise ValueError(f"max_caption_chars must be >= 1, got {self.max_caption_chars}")


def endpoint(url: str) -> str:
    """Accept a base URL (`.../v1`) or the full chat-completions URL."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class ChatClient:
    """Minimal chat-completions client with retries, backoff and jitter (thread-safe)."""

    def __init__(self, config: LLMConfig):
        self.config = config
        self.url = endpoint(config.url)
        self.api_key = os.environ.get(config.key_env, "")
        self._random = random.Random(config.seed)
        self._lock = threading.Lock()
        self.requests = 0

    def _sleep(self, attempt: int, retry_after: str | None = None) -> None:
        delay = min(self.config.max_backoff, self.config.backoff * (2 ** attempt))
        with self._lock:
            delay *= 0.5 + self._random.random()  # jitter in [0.5, 1.5)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.config.max_backoff))
            except ValueError:
                pass
        time.sleep(delay)

    def chat(self, messages: list[dict]):
        """Content of the first choice (as sent: may be None); raises LLMError after the
        retry limit."""
        body = json.dumps({"model": self.config.model, "messages": messages,
                           "temperature": self.config.temperature}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            with self._lock:
                self.requests += 1
            retry_after = None
            try:
                status, reply_headers, payload = post(self.url, body, headers,
                                                      self.config.timeout)
                if status == 429 or status >= 500:
                    last = f"HTTP {status}"
                    retry_after = reply_headers.get("Retry-After")
                elif status >= 400:
                    raise LLMError(f"{self.url}: HTTP {status}: {payload[:200]!r}")
                else:
                    try:
                        return json.loads(payload)["choices"][0]["message"]["content"]
                    except (ValueError, KeyError, IndexError, TypeError) as err:
                        last = f"malformed response body: {err}"
            except DeadlineExceeded as err:
                last = str(err)
            except (ConnectionError, OSError, http.client.HTTPException) as err:
                last = f"connection error: {type(err).__name__}: {err}"
            if attempt < self.config.max_retries:
                self._sleep(attempt, retry_after)
        raise LLMError(f"{self.url}: gave up after {self.config.max_retries + 1} attempts "
                       f"({last})")


class DeadlineExceeded(TimeoutError):
    """A request that did not finish (connect, send, read everything) within its deadline."""


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    """A connection for `url` (through a proxy when the environment names one) and the
    request target to send."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise LLMError(f"{url}: only http and https endpoints are supported")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        proxy_port = proxy_parts.port or 80
        if https:
            conn = http.client.HTTPSConnection(proxy_parts.hostname, proxy_port, timeout=timeout)
            conn.set_tunnel(parts.hostname, port)
            return conn, target
        return http.client.HTTPConnection(proxy_parts.hostname, proxy_port,
                                          timeout=timeout), url
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    return cls(parts.hostname, port, timeout=timeout), target


def post(url: str, body: bytes, headers: dict, timeout: float):
    """POST `body`; (status, headers (case-insensitive), whole body) within `timeout` s in all.

    A watchdog shuts the socket at the deadline, so neither a slow connect, a server that
    drips bytes, nor slow headers can hold the request longer; raises DeadlineExceeded.
    """
    deadline = time.monotonic() + timeout
    conn, target = _connection(url, timeout)
    expired = threading.Event()
    held = []  # the socket, kept: the connection drops its reference once a response owns it

    def cut():
        expired.set()
        for sock in held:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"request deadline of {timeout:g}s exceeded")
        return left

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        sock = conn.sock
        held.append(sock)
        if expired.is_set():  # the deadline passed while connecting
            cut()
        sock.settimeout(remaining())
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        chunks, size = [], 0
        while True:
            sock.settimeout(remaining())
            chunk = response.read1(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise http.client.HTTPException(
                    f"response body over {MAX_RESPONSE_BYTES} bytes")
        remaining()
        return response.status, response.headers, b"".join(chunks)
    except DeadlineExceeded:
        raise
    except (OSError, http.client.HTTPException) as err:
        if expired.is_set() or time.monotonic() >= deadline:
            raise DeadlineExceeded(f"request deadline of {timeout:g}s exceeded "
                                   f"({type(err).__name__})") from None
        raise
    finally:
        watchdog.cancel()
        conn.close()


class LLMReasoner:
    """Captions for event JSON through a chat endpoint, with validation, re-asks and cache."""

    def __init__(self, config: LLMConfig, cache_dir: str | None = None,
                 template: str | None = None):
        self.config = config
        self.template = template if template is not None else load_template()
        self.client = ChatClient(config)
        self.cache = DiskCache(cache_dir) if cache_dir else None
        self.cache_hits = 0
        self._lock = threading.Lock()

    def key(self, events: dict) -> str:
        return cache_key(events, self.template, self.config.model)

    def cached(self, events: dict):
        return self.cache.get(self.key(events)) if self.cache else None

    def describe(self, events: dict) -> list[dict[str, str]]:
        """Five triplets for one clip; raises LLMError when no valid answer comes."""
        if self.cache:
            hit = self.cache.get(self.key(events))
            if hit is not None:
                with self._lock:
                    self.cache_hits += 1
                return parse_captions(json.dumps(hit), self.config.max_caption_chars)
        messages = [{"role": "user", "content": render_prompt(self.template, events)}]
        error = None
        for _ in range(self.config.max_format_retries + 1):
            answer = self.client.chat(messages)
            try:
                triplets = parse_captions(answer, self.config.max_caption_chars)
            except CaptionFormatError as err:
                error = err
                said = answer if isinstance(answer, str) else json.dumps(answer)
                messages = messages + [
                    {"role": "assistant", "content": said},
                    {"role": "user", "content": f"That answer is invalid: {err}. Reply with "
                     "only a JSON list of exactly five objects, each with the non-empty string "
                     "fields left, right and two_hands_relation, each at most "
                     f"{self.config.max_caption_chars} characters."}]
                continue
            if self.cache:
                self.cache.put(self.key(events), triplets)
            return triplets
        raise LLMError(f"no valid answer after {self.config.max_format_retries + 1} tries: "
                       f"{error}")
