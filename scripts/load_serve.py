"""Measure `mnist-jax serve` under load: requests per second and p50/p99 latency of /predict.

    python scripts/load_serve.py runs/smoke --clients 1,16 --requests 2000 --duration 20

Starts `python -m mnist_jax serve CHECKPOINT --port 0` (or uses --url), then for each client
count sends the same 140x140 canvas (what the drawing page posts: a sample test digit drawn
dark on light) over one keep-alive connection per client, until --requests are answered or
--duration seconds have passed, whichever comes first. Each answer must be a 200 with the
digit the first answer gave. `--slow N` also holds N clients that send half a request and
stall, to show their cost. Stops the server it started with SIGTERM. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

SIDE = 140  # pixels per side of the canvas the drawing page posts
WARM_UP = 50  # requests sent before timing, on one connection


def canvas_body() -> bytes:
    """A /predict body: the first sample test digit, 5x, dark on light, on a 140x140 canvas."""
    from mnist_jax.data import mnist

    digit = mnist.load_sample().test_images[0]  # (28, 28) uint8, light on dark
    canvas = 255 - np.kron(digit, np.ones((SIDE // 28, SIDE // 28), np.uint8))  # (140, 140)
    pixels = base64.b64encode(canvas.tobytes()).decode()
    return json.dumps({"width": SIDE, "height": SIDE, "pixels": pixels}).encode()


def start_server(checkpoint: str, timeout: float) -> tuple[subprocess.Popen, str, int]:
    """Start `mnist-jax serve` on a free loopback port; return it and its address."""
    command = [sys.executable, "-m", "mnist_jax", "serve", checkpoint, "--port", "0"]
    server = subprocess.Popen(
        command + ["--timeout", str(timeout)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert server.stderr is not None
    deadline = time.monotonic() + 120
    for line in server.stderr:  # the server prints its address once the model is compiled
        found = re.search(r"http://([\d.]+):(\d+)/", line)
        if found:
            # Keep draining the log (one line per request) so the pipe never fills up.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, found[1], int(found[2])
        if time.monotonic() > deadline:
            break
    server.kill()
    raise SystemExit(f"the server did not start: {' '.join(command)}")


def post(connection: http.client.HTTPConnection, body: bytes) -> int:
    """POST one canvas; return the predicted digit (raise on anything but a 200)."""
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    reply = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {reply[:200]!r}")
    return json.loads(reply)["digit"]


def run_clients(
    host: str, port: int, body: bytes, clients: int, requests: int, duration: float
) -> dict[str, float]:
    """Load the server with `clients` keep-alive connections; return rate and latencies."""
    expected = post(http.client.HTTPConnection(host, port, timeout=30), body)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    left = [requests]
    stop_at = time.perf_counter() + duration

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        mine = []
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    if left[0] == 0:
                        break
                    left[0] -= 1
                start = time.perf_counter()
                digit = post(connection, body)
                mine.append(time.perf_counter() - start)
                if digit != expected:
                    raise RuntimeError(f"answered {digit}, first answer was {expected}")
        except Exception as e:  # reported below, counted as a failure
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": seconds,
        "per_second": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
        "first_error": errors[0] if errors else "",
    }


def hold_slow_clients(host: str, port: int, count: int) -> list[socket.socket]:
    """Open `count` connections that each send half a request and then stall."""
    half = b'POST /predict HTTP/1.1\r\nHost: load\r\nContent-Length: 30000\r\n\r\n{"width'
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(half)
        sockets.append(sock)
    return sockets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", help="checkpoint or run folder to serve")
    parser.add_argument("--url", help="load a server already running here instead")
    parser.add_argument("--clients", default="1,16", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=2000, help="requests per client count")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per client count")
    parser.add_argument("--slow", type=int, default=0, help="stalled clients held meanwhile")
    parser.add_argument("--timeout", type=float, default=60.0, help="the started server's")
    args = parser.parse_args()
    if not args.url and not args.checkpoint:
        parser.error("give a CHECKPOINT to serve or the --url of a running server")
    server = None
    if args.url:
        split = urlsplit(args.url)
        host, port = split.hostname or "127.0.0.1", split.port or 80
    else:
        server, host, port = start_server(str(Path(args.checkpoint)), args.timeout)
    try:
        body = canvas_body()
        warm = http.client.HTTPConnection(host, port, timeout=30)
        for _ in range(WARM_UP):
            post(warm, body)
        warm.close()
        slow = hold_slow_clients(host, port, args.slow)
        print(f"/predict of a {SIDE}x{SIDE} canvas ({len(body):,} bytes) at {host}:{port}", end="")
        print(f", {len(slow)} stalled clients held" if slow else "")
        print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} errors")
        for clients in (int(c) for c in args.clients.split(",")):
            r = run_clients(host, port, body, clients, args.requests, args.duration)
            print(
                f"{r['clients']:>7} {r['requests']:>8} {r['per_second']:>8.0f} "
                f"{r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['errors']:>6} {r['first_error']}"
            )
        for sock in slow:
            sock.close()
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
