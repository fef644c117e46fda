"""A local web page to draw a digit and watch the model read it, on the standard library only.

`GET /` returns one static page (`static/draw.html`: a canvas, inline JS and CSS, nothing
fetched from elsewhere). As you draw, the page posts the canvas's grayscale pixels to
`POST /predict` as JSON:

    {"width": W, "height": H, "pixels": "<base64 of W*H bytes, row-major, 0 = black>"}

The server normalises them exactly like `mnist-jax predict` does for an image file
(`mnist_jax.preprocess.to_mnist`) and answers `{"digit": d, "probabilities": [10 floats]}`.
Bad requests get a JSON `{"error": "..."}`: 400 for malformed JSON or pixels, 404 for an
unknown path, 411 without a length, 413 for a body over `MAX_BODY` bytes. The model is loaded
once; every prediction is one jitted call on a batch of one, so it compiles once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax import preprocess
from mnist_jax.errors import DataError, MnistJaxError

MAX_BODY = 64 * 1024  # bytes; a 160x160 canvas in base64 is about 34 KiB
MAX_SIDE = 512  # pixels per side of a posted canvas
Log = Callable[[str], None]
Classify = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, 10)


class BadRequest(Exception):
    """A request the server answers with `status` and a one-line JSON error."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def page() -> bytes:
    """The drawing page, read from the package data."""
    return resources.files("mnist_jax").joinpath("static/draw.html").read_bytes()


def decode_canvas(body: bytes) -> np.ndarray:
    """Parse a /predict body into a grayscale image (H, W) float64 in [0, 1].

    Raises:
        BadRequest: 400 for invalid JSON, missing fields or pixels that do not fit the size.
    """
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"body is not valid JSON ({e})") from None
    if not isinstance(request, dict):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    width, height, pixels = (request.get(k) for k in ("width", "height", "pixels"))
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or isinstance(side, bool) or not 1 <= side <= MAX_SIDE:
            raise BadRequest(
                HTTPStatus.BAD_REQUEST, f"'{name}' must be an integer from 1 to {MAX_SIDE}"
            )
    if not isinstance(pixels, str):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "'pixels' must be a base64 string")
    try:
        raw = base64.b64decode(pixels, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "'pixels' is not valid base64") from None
    if len(raw) != width * height:
        raise BadRequest(
            HTTPStatus.BAD_REQUEST,
            f"'pixels' holds {len(raw)} bytes; a {width}x{height} canvas needs {width * height}",
        )
    return np.frombuffer(raw, np.uint8).reshape(height, width) / 255


def answer(classify: Classify, body: bytes) -> dict[str, Any]:
    """The /predict response for one request body."""
    image = decode_canvas(body)
    try:
        digit = preprocess.to_mnist(image, where="canvas")
    except DataError as e:
        raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None
    probs = classify(digit[None])[0]
    return {"digit": int(np.argmax(probs)), "probabilities": [float(p) for p in probs]}


def make_handler(classify: Classify, log: Log) -> type:
    """Build the request handler class around one loaded model."""
    html = page()

    class Handler(BaseHTTPRequestHandler):
        server_version = "mnist-jax"

        def do_GET(self) -> None:  # the name http.server dispatches to
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, html, "text/html; charset=utf-8")
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no page at {self.path}; open /")

        def do_POST(self) -> None:
            try:
                if self.path != "/predict":
                    raise BadRequest(
                        HTTPStatus.NOT_FOUND, f"no endpoint {self.path}; POST /predict"
                    )
                self._json(HTTPStatus.OK, answer(classify, self._body()))
            except BadRequest as e:
                self._error(e.status, str(e))

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header")
            if int(length) > MAX_BODY:
                self.close_connection = True  # the unread body must not be parsed as a request
                raise BadRequest(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"body of {int(length):,} bytes is over the {MAX_BODY:,}-byte limit",
                )
            return self.rfile.read(int(length))

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._json(status, {"error": message})

        def _json(self, status: HTTPStatus, value: dict[str, Any]) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log(f"{self.address_string()} {format % args}")

    return Handler


def make_server(
    classify: Classify, host: str = "127.0.0.1", port: int = 0, log: Log = lambda _: None
) -> ThreadingHTTPServer:
    """Bind a server for `classify` (port 0 picks a free one); call serve_forever to run it."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(classify, log))
    except OSError as e:
        raise MnistJaxError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.daemon_threads = True
    return server


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, log: Log = print) -> None:
    """`mnist-jax serve`: load the checkpoint once and serve the drawing page until Ctrl-C."""
    from mnist_jax.inference import load_predictor

    classify = load_predictor(path, batch_size=1)
    classify(np.zeros((1, 28, 28), np.uint8))  # compile before the first visitor waits for it
    server = make_server(classify, host, port, log)
    bound_host, bound_port = server.server_address[:2]
    log(f"draw a digit at http://{bound_host}:{bound_port}/  (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log("stopped")
    finally:
        server.server_close()
