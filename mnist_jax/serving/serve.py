"""A local web page to draw a digit and watch the model read it, on the standard library only.

`GET /` returns one static page (`static/draw.html`: a canvas, inline JS and CSS, nothing
fetched from elsewhere). As you draw, the page posts the canvas's grayscale pixels to
`POST /predict` as JSON:

    {"width": W, "height": H, "pixels": "<base64 of W*H bytes, row-major, 0 = black>"}

The server normalises them exactly like `mnist-jax predict` does for an image file
(`mnist_jax.data.preprocess.to_mnist`) and answers `{"digit": d, "probabilities": [10 floats]}`.
`POST /predict/file` takes an image file as the body instead (what `predict` reads, but .npy:
PNG, JPEG, TIFF, BMP, GIF, WebP or PGM, up to MAX_UPLOAD bytes and UPLOAD_PIXELS pixels) and
answers the same way; the page's file button sends one.
Bad requests get a JSON `{"error": "..."}`: 400 for malformed JSON, pixels or image files, 404
for an unknown path, 405 for another method; the HTTP limits (411, 413, 431, the deadlines, the
connection bound, graceful shutdown) are `mnist_jax.serving.httpserver`'s. The model is loaded once;
every prediction is one jitted call on a batch of one, run on the server's worker threads,
so it compiles once. Uploaded pictures are decoded one at a time (`errors.decoding`), reduced
as they are read (`mnist_jax.data.imagefile`), and their buffers go back to the system when
freed (`hand_back_large_buffers`), so memory stays near what one picture at the caps takes.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import io
import json
import signal
import socket
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mnist_jax.data import preprocess
from mnist_jax.errors import DataError, MnistJaxError
from mnist_jax.serving.httpserver import (
    MAX_CONNECTIONS,
    TIMEOUT,
    WORKERS,
    BadRequest,
    Log,
    Reply,
    Request,
    Server,
    listen,
    printable,
)

MAX_SIDE = 512  # pixels per side of a posted canvas
MAX_UPLOAD = 4 * 1024 * 1024  # bytes of an uploaded image file
# Pixels of an uploaded image (a 12-megapixel phone photo fits): each becomes a few float64
# copies while the digit is found, on each of the server's worker threads.
UPLOAD_PIXELS = 16_000_000
Classify = Callable[[np.ndarray], np.ndarray]  # (N, 28, 28) uint8 -> (N, 10)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 1 << 20  # bytes: larger allocations are mapped on their own


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


def decode_file(body: bytes) -> np.ndarray:
    """Read an uploaded image file into (H, W) float64 in [0, 1], as `predict` reads files.

    Raises:
        BadRequest: 400 for a format not read, a picture over UPLOAD_PIXELS, or bad bytes.
    """
    try:
        return preprocess.read_picture(io.BytesIO(body), "upload", max_pixels=UPLOAD_PIXELS)
    except DataError as e:
        raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None


# The POST endpoints: how each decodes its body, and its name in messages.
DECODERS: dict[str, tuple[Callable[[bytes], np.ndarray], str]] = {
    "/predict": (decode_canvas, "canvas"),
    "/predict/file": (decode_file, "upload"),
}


def answer(classify: Classify, body: bytes, path: str = "/predict") -> dict[str, Any]:
    """The response to one request body sent to the POST endpoint `path`."""
    decode, where = DECODERS[path]
    image = decode(body)
    try:
        digit = preprocess.to_mnist(image, where=where)
    except DataError as e:
        raise BadRequest(HTTPStatus.BAD_REQUEST, str(e)) from None
    probs = classify(digit[None])[0]
    return {"digit": int(np.argmax(probs)), "probabilities": [float(p) for p in probs]}


class DrawingServer(Server):
    """The drawing page at `/`, the model's answer at `POST /predict` (a canvas) and at
    `POST /predict/file` (an image file)."""

    def __init__(self, classify: Classify, sock: socket.socket, log: Log, **limits: Any) -> None:
        """`limits`: timeout, max_connections and workers, as `Server` takes them."""
        super().__init__(sock, log, **limits)
        self.classify = classify
        self.html = page()

    def body_limit(self, method: str, path: str) -> int:
        """Image files may be larger than a canvas."""
        if (method, path) == ("POST", "/predict/file"):
            return MAX_UPLOAD
        return super().body_limit(method, path)

    async def route(self, request: Request) -> Reply:
        """(status, JSON value or page bytes) for a complete request."""
        path = request.path.split("?", 1)[0]  # the query is ignored
        if request.method == "GET":
            if path in ("/", "/index.html"):
                return HTTPStatus.OK, self.html
            return HTTPStatus.NOT_FOUND, {"error": f"no page at {printable(path)}; open /"}
        if request.method != "POST":
            return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET / or POST /predict"}
        if path not in DECODERS:
            return HTTPStatus.NOT_FOUND, {
                "error": f"no endpoint {printable(path)}; POST /predict or /predict/file"
            }
        return HTTPStatus.OK, await self.in_worker(answer, self.classify, request.body, path)


def hand_back_large_buffers() -> None:
    """Have glibc map every allocation over MMAP_THRESHOLD on its own, so that a decoded
    picture's buffers go back to the system as soon as they are freed.

    By default glibc raises that threshold to the largest block freed so far (up to 32 MiB),
    after which a picture's blocks come from heaps the worker threads keep: eight uploads at
    the caps left the server at 372 MB, against 220 MB this way (and peaked 70 MB higher).
    Where the C library has no `mallopt` (not glibc), nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def make_server(
    classify: Classify,
    host: str = "127.0.0.1",
    port: int = 0,
    log: Log = lambda _: None,
    *,
    timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    workers: int = WORKERS,
) -> DrawingServer:
    """Bind a server for `classify` (port 0 picks a free one); call serve_forever to run it.

    Raises:
        MnistJaxError: the address cannot be bound, or a limit is not positive.
    """
    if timeout <= 0 or max_connections < 1 or workers < 1:
        raise MnistJaxError("--timeout, --max-connections and workers must be positive")
    sock, max_connections = listen(host, port, max_connections, log)
    return DrawingServer(
        classify, sock, log, timeout=timeout, max_connections=max_connections, workers=workers
    )


def serve(
    path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    log: Log = print,
    *,
    timeout: float = TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    placement: Any = None,
) -> None:
    """`mnist-jax serve`: load the checkpoint once and serve the drawing page until stopped.

    SIGTERM or Ctrl-C stops it gracefully (the requests under way are answered); a second
    one stops it at once. The model runs on `placement` (JAX's default device when None).
    """
    from mnist_jax.serving.inference import load_image_predictor

    hand_back_large_buffers()
    server = make_server(
        load_image_predictor(path, batch_size=1, placement=placement),
        host,
        port,
        log,
        timeout=timeout,
        max_connections=max_connections,
    )
    server.classify(np.zeros((1, 28, 28), np.uint8))  # compile before the first visitor waits
    bound_host, bound_port = server.server_address[:2]
    log(f"draw a digit at http://{bound_host}:{bound_port}/  (Ctrl-C stops)")
    try:
        server.serve_forever(signals=(signal.SIGINT, signal.SIGTERM))
    finally:
        server.server_close()
