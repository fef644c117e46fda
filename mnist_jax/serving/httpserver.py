"""An asyncio HTTP/1.1 server on the standard library, the machinery under `mnist-jax serve`.

An application subclasses `Server` and answers complete requests in `route`. Requests are
parsed strictly; a `BadRequest` is answered with its status and a JSON `{"error": "..."}`:
400 for a malformed line or header (a Content-Length of anything but ASCII digits), 411
without a length (or with Transfer-Encoding), 413 for a body over `MAX_BODY` bytes, or over
what `Server.body_limit` allows a route (refused from its headers, never read), 431 for
headers over `MAX_HEAD`; at most `MAX_LARGE_BODIES` bodies over `MAX_BODY` are received at
once, another is answered 503. Every request that arrives whole gets an answer: an exception
of the application's own is a 500, logged as one line naming where it was raised.

Slow and many clients. One asyncio event loop receives every request; a connection costs a
coroutine and its buffers, not a thread. Only a complete request reaches the small pool of
`workers` threads (`Server.in_worker`). A request must arrive whole, headers and body,
within `timeout` seconds of its first byte (a deadline, not reset by each byte that
trickles in); a connection with no request under way is closed after `timeout` seconds
idle; an answer the client does not read in `timeout` seconds is dropped. At most
`max_connections` are open at once; one more is answered 503 and closed. Each request is
one log line (client, method, path, status, milliseconds); a client that goes away is one
line at most, never a traceback. SIGTERM or Ctrl-C stops listening, closes idle
connections, answers the requests under way (for up to `SHUTDOWN_GRACE` seconds) and
returns, so the command exits 0.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path
from typing import Any

from mnist_jax.errors import MnistJaxError

MAX_BODY = 64 * 1024  # bytes; a 160x160 canvas in base64 is about 34 KiB
# Bodies over MAX_BODY (where `Server.body_limit` allows them) are received this many at a time,
# so that many clients sending large bodies at once hold at most this many in memory.
MAX_LARGE_BODIES = 8
MAX_HEAD = 16 * 1024  # bytes of request line and headers
MAX_HEADERS = 100  # header lines per request
TIMEOUT = 10.0  # seconds to receive a whole request, to wait idle, to hand over an answer
MAX_CONNECTIONS = 1000  # open at once; each costs a file descriptor
WORKERS = 2  # threads that handle complete requests
SHUTDOWN_GRACE = 10.0  # seconds the requests under way get to finish after SIGTERM
SPARE_FILES = 64  # descriptors kept for the model, logs and the listening socket
DIGITS = re.compile(r"[0-9]+")  # a Content-Length: ASCII digits only (not "²", not "٣")
Log = Callable[[str], None]
Reply = tuple[HTTPStatus, "dict[str, Any] | bytes"]  # a JSON value or an HTML page


class BadRequest(Exception):
    """A request the server answers with `status` and a one-line JSON error."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    """One parsed HTTP/1.x request; `keep_alive` says whether another may follow."""

    method: str
    path: str
    keep_alive: bool
    body: bytes = b""


def parse_head(head: bytes) -> tuple[str, str, bool, dict[str, str]]:
    """Parse a request line and headers (ending in a blank line) strictly.

    Returns:
        (method, path, keep_alive, headers with lower-case names).

    Raises:
        BadRequest: 400 for a malformed line or conflicting lengths, 431 for too many headers.
    """
    lines = head.decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # blank lines before a request are allowed (RFC 9112 2.2)
        lines.pop(0)
    parts = lines[0].split(" ") if lines else []
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[1]:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed request line; speak HTTP/1.1")
    method, path, version = parts
    fields = [line for line in lines[1:] if line]
    if len(fields) > MAX_HEADERS:
        raise BadRequest(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"over {MAX_HEADERS} header lines"
        )
    headers: dict[str, str] = {}
    for line in fields:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(HTTPStatus.BAD_REQUEST, "malformed header line")
        name, value = name.lower(), value.strip()
        if name == "content-length" and headers.get(name, value) != value:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "conflicting Content-Length headers")
        headers[name] = (
            f"{headers[name]}, {value}" if name in headers and name != "content-length" else value
        )
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return method, path, keep_alive, headers


def printable(text: str, limit: int = 100) -> str:
    """`text` cut to `limit` characters with control characters escaped, safe for a log."""
    cut = text[:limit] + ("..." if len(text) > limit else "")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cut)


def response(status: HTTPStatus, body: bytes, kind: str, close: bool) -> bytes:
    """The bytes of one HTTP/1.1 response."""
    head = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Server: mnist-jax",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Type: {kind}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
    ]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def json_response(status: HTTPStatus, value: dict[str, Any], close: bool) -> bytes:
    """`response` with a JSON body."""
    return response(status, json.dumps(value).encode(), "application/json", close)


@dataclass
class _Connection:
    """What shutdown needs to know of one open connection."""

    task: asyncio.Task
    busy: bool = False  # a request is being received or answered


class Server:
    """An HTTP/1.1 server on a bound socket; a subclass answers requests in `route`.

    The API follows `socketserver`: `server_address`, `serve_forever()` (blocks), `shutdown()`
    (from another thread; waits until serve_forever has returned) and `server_close()`.
    """

    def __init__(
        self,
        sock: socket.socket,
        log: Log,
        *,
        timeout: float = TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        workers: int = WORKERS,
    ) -> None:
        self.socket = sock
        self.server_address = sock.getsockname()
        self.log = log
        self.timeout = timeout
        self.max_connections = max_connections
        # Threads start on first use; serve_forever shuts them down when it returns.
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="mnist-jax-worker")
        self._connections: dict[asyncio.Task, _Connection] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._large_bodies = 0  # bodies over MAX_BODY being received now

    # --- what an application provides

    def body_limit(self, method: str, path: str) -> int:
        """The most bytes a request's body may have: MAX_BODY unless a subclass says more."""
        return MAX_BODY

    async def route(self, request: Request) -> Reply:
        """(status, JSON value or HTML page bytes) for a complete request.

        Runs on the event loop: hand slow work to `in_worker`. Raise `BadRequest` to answer
        with its status and a JSON error; the connection stays open.
        """
        raise NotImplementedError

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` on one of the `workers` threads, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- life cycle

    def serve_forever(self, signals: Iterable[signal.Signals] = ()) -> None:
        """Serve until `shutdown()` or one of `signals`; then finish the requests under way."""
        self._stopped.clear()
        try:
            asyncio.run(self._serve(tuple(signals)))
        finally:
            self._running.set()  # so that a shutdown() never waits for a start that failed
            self._stopped.set()

    def shutdown(self) -> None:
        """Ask serve_forever to stop (from another thread) and wait until it has returned."""
        self._running.wait()
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not self._stopped.is_set():
            loop.call_soon_threadsafe(stop.set)
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()

    def _request_stop(self) -> None:
        """First signal: stop gracefully. Second: stop now, dropping what is under way."""
        assert self._stop is not None
        if self._stop.is_set():
            for task in list(self._connections):
                task.cancel()
        self._stop.set()

    async def _serve(self, signals: tuple[signal.Signals, ...]) -> None:
        loop = asyncio.get_running_loop()
        self._loop, self._stop = loop, asyncio.Event()
        loop.set_exception_handler(self._loop_error)
        for sig in signals:
            loop.add_signal_handler(sig, self._request_stop)
        server = await asyncio.start_server(self._connection, sock=self.socket, limit=MAX_HEAD)
        self._running.set()
        try:
            await self._stop.wait()
        finally:
            server.close()  # stop listening: new clients are refused from here on
            await self._finish()
            self._executor.shutdown(wait=True)
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def _finish(self) -> None:
        """Close idle connections; give the requests under way SHUTDOWN_GRACE to finish."""
        busy = [c.task for c in self._connections.values() if c.busy]
        for c in list(self._connections.values()):
            if not c.busy:
                c.task.cancel()
        self.log(f"stopping: answering {len(busy)} request(s) under way")
        tasks = list(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.log("stopped")

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """One log line for an error asyncio reports (a full descriptor table, say)."""
        error = context.get("exception")
        self.log(f"server: {context.get('message', 'error')}" + (f": {error}" if error else ""))

    # --- one connection

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "-"
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._connections) >= self.max_connections or self._stop_is_set():
                self.log(f"{client} refused: {len(self._connections)} connections are open")
                busy = {"error": "the server is busy; try again shortly"}
                writer.write(json_response(HTTPStatus.SERVICE_UNAVAILABLE, busy, close=True))
                return
            state = self._connections[task] = _Connection(task)
            keep_alive = True
            while keep_alive and not self._stop_is_set():
                state.busy = False
                keep_alive = await self._exchange(reader, writer, client, state)
        except asyncio.CancelledError:
            pass  # shutdown: an idle connection, or one past the grace period
        except Exception as e:  # a bug: one line saying where, and keep serving the others
            self.log(f"{client} internal error: {fault(e)}")
        finally:
            self._connections.pop(task, None)
            writer.close()

    def _stop_is_set(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: str,
        state: _Connection,
    ) -> bool:
        """Receive one request and answer it; return whether the connection stays open."""
        try:  # idle until the first byte of a request, for at most `timeout` seconds
            first = await asyncio.wait_for(reader.readexactly(1), self.timeout)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return False  # an idle connection timed out or closed: nothing to report
        state.busy = True
        start = time.perf_counter()
        method, path, problem = "-", "-", ""
        try:
            try:
                request = await asyncio.wait_for(self._receive(reader, first), self.timeout)
            except TimeoutError:
                self.log(f"{client} sent no whole request in {self.timeout:g} s; closed")
                late = {"error": f"the request did not arrive within {self.timeout:g} s"}
                writer.write(json_response(HTTPStatus.REQUEST_TIMEOUT, late, close=True))
                return False
            except (asyncio.IncompleteReadError, ConnectionError):
                self.log(f"{client} closed the connection in the middle of a request")
                return False
            except BadRequest as e:
                status, reply, keep_alive = e.status, {"error": str(e)}, False
            else:
                method, path = request.method, printable(request.path)
                keep_alive = request.keep_alive
                try:
                    status, reply = await self.route(request)
                except BadRequest as e:
                    status, reply = e.status, {"error": str(e)}
                except Exception as e:  # the application's own fault: answered all the same
                    status, keep_alive = HTTPStatus.INTERNAL_SERVER_ERROR, False
                    reply = {"error": "the server failed to answer; see its log"}
                    problem = f" (internal error: {fault(e)})"
            keep_alive = keep_alive and not self._stop_is_set()
            if isinstance(reply, dict):
                data = json_response(status, reply, close=not keep_alive)
            else:
                data = response(status, reply, "text/html; charset=utf-8", close=not keep_alive)
            writer.write(data)
            try:
                await asyncio.wait_for(writer.drain(), self.timeout)
            except (TimeoutError, ConnectionError):
                note = " (the client did not take the answer)"
                keep_alive = False
            else:
                note = ""
            elapsed = (time.perf_counter() - start) * 1000
            self.log(f"{client} {method} {path} {status.value} {elapsed:.1f} ms{note}{problem}")
            return keep_alive
        finally:
            state.busy = False

    async def _receive(self, reader: asyncio.StreamReader, first: bytes) -> Request:
        """Read the rest of a request's head and its body (refused unread if too long)."""
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise BadRequest(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request line and headers over {MAX_HEAD:,} bytes",
            ) from None
        method, path, keep_alive, headers = parse_head(head)
        if "transfer-encoding" in headers:
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
        length = headers.get("content-length")
        if length is None and method == "POST":
            raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
        if length is not None and not DIGITS.fullmatch(length):
            raise BadRequest(HTTPStatus.BAD_REQUEST, "Content-Length must be a whole number")
        digits = (length or "0").lstrip("0") or "0"
        most = self.body_limit(method, path.split("?", 1)[0])
        if len(digits) > len(str(most)) or int(digits) > most:  # never int() of 5,000 digits
            shown = f"{int(digits):,} bytes" if len(digits) < 20 else f"{len(digits):,} digits"
            raise BadRequest(  # answered from the headers; the body is never read
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {shown} is over the {most:,}-byte limit",
            )
        size = int(digits)
        if size <= MAX_BODY:
            body = await reader.readexactly(size) if size else b""
        elif self._large_bodies >= MAX_LARGE_BODIES:
            raise BadRequest(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{MAX_LARGE_BODIES} large bodies are being received already; try again",
            )
        else:
            self._large_bodies += 1  # the event loop is one thread: no lock needed
            try:
                body = await reader.readexactly(size)
            finally:
                self._large_bodies -= 1
        return Request(method, path, keep_alive, body)


def fault(error: Exception) -> str:
    """One line for an exception of the server's own: what it says and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    text = " ".join(str(error).split())[:200]  # one line
    return f"{type(error).__name__}{': ' * bool(text)}{text}{where}"


def fit_file_limit(max_connections: int, log: Log) -> int:
    """Raise the soft open-file limit to fit `max_connections`; return how many fit.

    Each connection holds one descriptor. Where the hard limit is too low, the connection
    bound is lowered to what fits, with one log line saying so.
    """
    try:
        import resource
    except ImportError:  # not a Unix
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + SPARE_FILES
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < need:
        fit = max(1, soft - SPARE_FILES)
        log(f"open-file limit {soft}: at most {fit} connections (raise `ulimit -n` for more)")
        return fit
    return max_connections


def listen(host: str, port: int, max_connections: int, log: Log) -> tuple[socket.socket, int]:
    """Bind a listening socket for up to `max_connections` (port 0 picks a free one).

    Returns:
        (the socket, the connection bound that fits the open-file limit; see `fit_file_limit`).

    Raises:
        MnistJaxError: the address cannot be bound.
    """
    max_connections = fit_file_limit(max_connections, log)
    try:
        sock = socket.create_server((host, port), backlog=min(max_connections, 1024))
    except OSError as e:
        raise MnistJaxError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock, max_connections
