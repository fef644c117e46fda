import base64
import http.client
import importlib.util
import io
import json
import platform
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax.cli.app import app
from mnist_jax.data import mnist, preprocess
from mnist_jax.serving import httpserver, serve
from mnist_jax.serving.inference import load_image_predictor, load_predictor
from tests.conftest import ROOT
from tests.test_imagefile import damaged_pictures
from tests.test_preprocess import LOSSY, USER_FORMATS, drawn, on_paper, user_files
from tests.trained_model import confident_digit, trained_smoke_model  # noqa: F401 (fixture)

# scripts/decode_memory.py: the picture at the caps it measures serve with
spec = importlib.util.spec_from_file_location("decode_memory", ROOT / "scripts/decode_memory.py")
decode_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(decode_memory)


@pytest.fixture(scope="module")
def server(smoke_model):
    httpd = serve.make_server(load_predictor(smoke_model, batch_size=1), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def call(address, method, path, body=None, headers=None, timeout=30):
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def canvas_body(image: np.ndarray) -> bytes:
    height, width = image.shape
    pixels = base64.b64encode(image.astype(np.uint8).tobytes()).decode()
    return json.dumps({"width": width, "height": height, "pixels": pixels}).encode()


def post_canvas(run, image: np.ndarray) -> tuple[int, dict]:
    """POST `image` as a canvas to a server started in-process for `run`, as `serve` loads
    it; return the status and the JSON answer."""
    httpd = serve.make_server(load_image_predictor(run, batch_size=1), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        status, _, body = call(httpd.server_address[:2], "POST", "/predict", canvas_body(image))
    finally:
        httpd.shutdown()
        httpd.server_close()
    return status, json.loads(body)


def test_page_is_served_with_its_canvas(server):
    status, kind, body = call(server, "GET", "/")
    assert status == 200 and kind.startswith("text/html")
    assert b"<canvas" in body and b"/predict" in body
    assert b"http://" not in body and b"https://" not in body  # nothing fetched from elsewhere


def test_a_drawn_digit_gets_probabilities(server, smoke_model):
    digit, label = confident_digit(smoke_model)
    status, kind, body = call(server, "POST", "/predict", canvas_body(on_paper(digit)))
    assert status == 200 and kind == "application/json"
    result = json.loads(body)
    assert sum(result["probabilities"]) == pytest.approx(1.0, rel=1e-5)
    assert len(result["probabilities"]) == 10
    assert result["digit"] == label == int(np.argmax(result["probabilities"]))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"width": 4, "height": 4, "pixels": "AAAA"}', "needs 16"),  # 3 bytes, not 16
        (b'{"width": 0, "height": 4, "pixels": ""}', "'width'"),
        (b'{"width": 2, "height": 2, "pixels": "%%%"}', "base64"),
        (b'{"width": 2, "height": 2, "pixels": "AAAAAA=="}', "blank"),
    ],
)
def test_bad_requests_are_400_with_a_message(server, body, message):
    status, kind, raw = call(server, "POST", "/predict", body)
    assert status == 400 and kind == "application/json"
    assert message in json.loads(raw)["error"]


def test_oversize_body_is_413(server):
    status, _, raw = call(server, "POST", "/predict", b"x" * (httpserver.MAX_BODY + 1))
    assert status == 413
    assert "limit" in json.loads(raw)["error"]


@pytest.fixture(scope="module")
def uploads(smoke_model, tmp_path_factory) -> tuple[dict[str, Path], int]:
    """One confidently read test digit drawn at 168x168 in each of USER_FORMATS, and its label."""
    digit, label = confident_digit(smoke_model)
    return user_files(drawn(digit), tmp_path_factory.mktemp("uploads"), "d"), label


def test_an_uploaded_file_of_each_format_is_read_like_the_8_bit_png(server, uploads):
    files, label = uploads
    answers = {}
    for name in USER_FORMATS:
        status, kind, body = call(server, "POST", "/predict/file", files[name].read_bytes())
        assert status == 200 and kind == "application/json", (name, body)
        answers[name] = json.loads(body)
    for name, result in answers.items():
        assert result["digit"] == label, name
        if name not in LOSSY:
            np.testing.assert_allclose(
                result["probabilities"], answers["png8"]["probabilities"], atol=1e-5, err_msg=name
            )
    assert files["tiff-float"].stat().st_size > httpserver.MAX_BODY  # larger than a canvas


def test_bad_uploads_are_one_line_400_or_413(server, uploads, monkeypatch):
    files, _ = uploads
    for body, message in (
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not a PNG, JPEG, TIFF, BMP, GIF, WebP, PGM"),
        (files["png8"].read_bytes()[:100], "not a readable PNG image"),
    ):
        status, _, raw = call(server, "POST", "/predict/file", body)
        assert status == 400 and message in json.loads(raw)["error"]
    monkeypatch.setattr(serve, "UPLOAD_PIXELS", 100)  # the pixels, from the header
    status, _, raw = call(server, "POST", "/predict/file", files["png8"].read_bytes())
    assert (
        status == 400 and "168x168 (28,224 pixels), more than the 100" in json.loads(raw)["error"]
    )
    with socket.create_connection(server, timeout=10) as sock:  # refused from the headers
        sock.sendall(
            b"POST /predict/file HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (serve.MAX_UPLOAD + 1)
        )
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 413 ") and b"4,194,304-byte limit" in reply


@pytest.mark.parametrize("name", ["png-broken-chunk", "jpeg-first-20-bytes", "jpeg-ffd8ffd9"])
def test_a_damaged_upload_is_a_one_line_400(server, name):
    status, _, raw = call(server, "POST", "/predict/file", damaged_pictures()[name])
    error = json.loads(raw)["error"]
    assert status == 400 and error.startswith("upload: not a readable ") and "\n" not in error


def test_a_fault_of_the_servers_own_is_a_500_and_one_log_line():
    def broken(images: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model\nfell over")

    lines: list[str] = []
    httpd = serve.make_server(broken, log=lines.append)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _, (body,) = sample_canvases(1)
        status, _, raw = call(httpd.server_address[:2], "POST", "/predict", body)
        assert status == 500 and "see its log" in json.loads(raw)["error"]
        assert call(httpd.server_address[:2], "GET", "/")[0] == 200  # and it serves on
    finally:
        httpd.shutdown()
        httpd.server_close()
    [line] = [line for line in lines if " 500 " in line]
    assert line.startswith("127.0.0.1 POST /predict 500 ")
    assert "(internal error: RuntimeError: the model fell over at test_serve.py:" in line
    assert not any("\n" in line for line in lines)


def test_large_uploads_at_once_are_bounded(server, uploads, monkeypatch):
    files, _ = uploads
    monkeypatch.setattr(httpserver, "MAX_LARGE_BODIES", 0)  # as if that many were under way
    large = files["tiff-float"].read_bytes()
    status, _, raw = call(server, "POST", "/predict/file", large)
    assert status == 503 and "try again" in json.loads(raw)["error"]
    small = files["png8"].read_bytes()  # within MAX_BODY: not counted
    assert call(server, "POST", "/predict/file", small)[0] == 200


def test_unknown_paths_are_404(server):
    for method in ("GET", "POST"):
        status, _, raw = call(server, method, "/nowhere", b"{}")
        assert status == 404
        assert "error" in json.loads(raw)


def find_browser() -> tuple[str, str]:
    """Paths of Chromium and its driver, or skip the test."""
    pytest.importorskip("selenium", reason="selenium is not installed (the dev extra)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    return browser, driver


@pytest.mark.long
def test_drawing_a_one_in_a_real_browser_shows_1(server, tmp_path):
    browser, driver_path = find_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=800,600",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"http://{server[0]}:{server[1]}/")
        canvas = driver.find_element(By.ID, "pad")
        # A vertical stroke down the middle of the 280x280 canvas (offsets from its centre).
        stroke = ActionChains(driver).move_to_element_with_offset(canvas, 0, -100)
        stroke.click_and_hold()
        for dy in range(-80, 101, 20):
            stroke.move_to_element_with_offset(canvas, 0, dy)
        stroke.release().perform()
        digit = driver.find_element(By.ID, "digit")
        WebDriverWait(driver, 20).until(lambda _: digit.get_attribute("data-digit") != "")
        WebDriverWait(driver, 5).until(lambda _: driver.execute_script("return !busy && !pending"))
        assert digit.text == "1"
        bars = driver.find_elements(By.CSS_SELECTOR, "#bars .row")
        assert len(bars) == 10
        assert "top" in bars[1].get_attribute("class")
        driver.find_element(By.ID, "clear").click()
        assert digit.get_attribute("data-digit") == ""
    finally:
        driver.quit()


def test_serve_on_a_busy_port_is_one_line_exit_2(smoke_model):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(smoke_model), "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("command", ["plot", "predict", "serve"])
def test_new_commands_have_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


# --- slow, many and rude clients, against the real command in its own process

TIMEOUT = 2.0  # seconds: the live server's --timeout, short so that tests wait little
SLOW_CLIENTS = 300


class LiveServer:
    """`python -m mnist_jax serve` in a subprocess, with its log collected line by line."""

    def __init__(self, checkpoint, *options: str) -> None:
        command = [sys.executable, "-m", "mnist_jax", "serve", str(checkpoint), "--port", "0"]
        self.process = subprocess.Popen(
            [*command, *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._collect, daemon=True).start()
        found = self.wait_for(r"http://([\d.]+):(\d+)/", 600)
        self.address = (found[1], int(found[2]))

    def _collect(self) -> None:
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, pattern: str, seconds: float, start: int = 0) -> re.Match:
        """The first log line from `start` on matching `pattern`; fail after `seconds`."""
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                for line in self.lines[start:]:
                    if found := re.search(pattern, line):
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self.changed.wait(0.2):
                    raise AssertionError(f"no log line like {pattern!r}; log: {self.lines[-5:]}")
                self.changed.wait(left)

    def status(self, field: str) -> int:
        """A number from /proc/PID/status, e.g. Threads or VmRSS (kB)."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+)", text, re.M)[1])

    def stop(self) -> int:
        """SIGTERM; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.fixture(scope="module")
def live(smoke_model):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * SLOW_CLIENTS:  # this process opens the slow clients' sockets
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4 * SLOW_CLIENTS, hard), hard))
    server = LiveServer(smoke_model, "--timeout", str(TIMEOUT))
    yield server
    assert server.stop() == 0


def sample_canvases(count: int) -> tuple[list[np.ndarray], list[bytes]]:
    """`count` sample test digits on paper (H, W) uint8 and their /predict bodies."""
    papers = [on_paper(d) for d in mnist.load_sample().test_images[:count]]
    return papers, [canvas_body(p) for p in papers]


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.long
def test_slow_clients_neither_delay_a_prediction_nor_outlive_the_timeout(live, smoke_model):
    digit, label = confident_digit(smoke_model)
    call(live.address, "POST", "/predict", canvas_body(on_paper(digit)))  # workers started
    threads_before = live.status("Threads")
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n"
    partial = [head[:30], head + b'{"width": 140, "he', b""]  # half a head, half a body, nothing
    slow, sent_at = [], []
    for i in range(SLOW_CLIENTS):
        sock = socket.create_connection(live.address, timeout=TIMEOUT + 5)
        sock.sendall(partial[i % 3])
        slow.append(sock)
        sent_at.append(time.monotonic())
    trickle = socket.create_connection(live.address, timeout=TIMEOUT + 5)
    trickle_start = time.monotonic()

    start = time.perf_counter()
    status, _, body = call(live.address, "POST", "/predict", canvas_body(on_paper(digit)))
    # Queued behind the slow clients, it would wait for their deadline (TIMEOUT) at least.
    assert time.perf_counter() - start < TIMEOUT
    assert status == 200 and json.loads(body)["digit"] == label
    assert live.status("Threads") < threads_before + 5  # not a thread per connection

    # A byte every 0.2 s does not keep a request alive past its deadline.
    trickle.settimeout(0.2)
    answer = b""
    for byte in head:
        try:
            trickle.send(bytes([byte]))
            answer = trickle.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if answer:
            break
    trickled = time.monotonic() - trickle_start
    # Kept alive by its bytes, it would last the whole head (a byte every 0.2 s): 12 s or more.
    assert answer.startswith(b"HTTP/1.1 408") and TIMEOUT - 0.1 < trickled < len(head) * 0.2 / 2

    for sock, sent, what in zip(slow, sent_at, partial * SLOW_CLIENTS):
        reply = read_until_closed(sock)  # the server closes each one
        assert time.monotonic() - sent < TIMEOUT + 3.0
        assert reply.startswith(b"HTTP/1.1 408") if what else reply == b""
        sock.close()
    trickle.close()


@pytest.mark.long
def test_memory_stays_flat_over_a_thousand_predictions(live):
    _, (body,) = sample_canvases(1)
    connection = http.client.HTTPConnection(*live.address, timeout=30)

    def predict(times: int) -> None:
        for _ in range(times):
            connection.request("POST", "/predict", body)
            response = connection.getresponse()
            assert response.status == 200 and "digit" in json.loads(response.read())

    predict(200)  # allocator pools and caches reach their steady size
    before = live.status("VmRSS")
    predict(1000)
    grown_kib = live.status("VmRSS") - before
    connection.close()
    assert grown_kib < 8 * 1024  # keeping each 26 KiB body would add 26 MiB


@pytest.fixture(scope="module")
def patient(smoke_model):
    """A live server with a long --timeout: large uploads decoded one after another on a busy
    machine are all received and answered."""
    server = LiveServer(smoke_model, "--timeout", "120")
    yield server
    assert server.stop() == 0


@pytest.mark.parametrize(
    "uploads",
    [
        2,  # both worker threads decoding
        pytest.param(httpserver.MAX_LARGE_BODIES, marks=pytest.mark.long),  # every slot
    ],
)
@pytest.mark.long
def test_uploads_at_the_pixel_cap_at_once_take_bounded_memory(patient, uploads):
    """4 MB 4000x4000 colour PNGs, all at once: the server's peak grows by what one picture
    at the caps takes to decode (1,076 MB for 8 before), and its memory goes back after."""
    live = patient
    buffer = io.BytesIO()
    decode_memory.large_upload().save(buffer, "png")
    body = buffer.getvalue()
    assert httpserver.MAX_BODY < len(body) <= serve.MAX_UPLOAD  # a large body, within limits
    peak, resident = live.status("VmHWM"), live.status("VmRSS")
    replies = [None] * uploads

    def client(i: int) -> None:  # decoded one after another: a busy machine takes a while
        replies[i] = call(live.address, "POST", "/predict/file", body, timeout=300)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(uploads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [reply and reply[0] for reply in replies] == [200] * uploads
    assert (live.status("VmHWM") - peak) * 1024 < 200_000_000
    if platform.libc_ver()[0] == "glibc":  # buffers handed back (`hand_back_large_buffers`)
        assert (live.status("VmRSS") - resident) * 1024 < 64_000_000


@pytest.mark.long
def test_fifty_concurrent_clients_get_the_models_own_answers(live, smoke_model):
    papers, bodies = sample_canvases(50)
    classify = load_predictor(smoke_model, batch_size=1)
    expected = [classify(preprocess.to_mnist(p / 255)[None])[0] for p in papers]
    replies: list = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def client(i: int) -> None:
        barrier.wait()
        replies[i] = call(live.address, "POST", "/predict", bodies[i])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for (status, _, body), probs in zip(replies, expected):
        result = json.loads(body)
        assert status == 200 and result["digit"] == int(np.argmax(probs))
        np.testing.assert_allclose(result["probabilities"], probs, rtol=1e-6, atol=1e-9)


def rude_client(address, kind: int, body: bytes) -> None:
    """Connect and leave abruptly: at once, mid-head, mid-body or before reading the answer."""
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    request += body
    cut = [0, 20, len(request) - len(body) // 2, len(request)][kind]
    sock = socket.create_connection(address, timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # reset
    sock.sendall(request[:cut])
    if kind == 3:
        time.sleep(0.01)  # the answer is under way when the client vanishes
    sock.close()


def test_abrupt_disconnects_log_one_line_at_most_and_no_traceback(live):
    _, (body,) = sample_canvases(1)
    start = len(live.lines)
    for i in range(100):
        rude_client(live.address, i % 4, body)
    status, _, _ = call(live.address, "GET", "/?after-the-rude-ones")
    assert status == 200
    live.wait_for(r"GET /\?after-the-rude-ones 200", 5, start)
    log = live.lines[start:]
    assert not [line for line in log if "Traceback" in line or "Exception" in line]
    assert len(log) <= 100 + 1
    assert all(line.startswith("127.0.0.1 ") for line in log)


def test_a_body_over_the_limit_is_refused_unread(live):
    with socket.create_connection(live.address, timeout=TIMEOUT + 5) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        reply = read_until_closed(sock)  # sent no body, so an answer means none was awaited
    # A server that waited for the body would answer 408 at its timeout, not 413.
    assert reply.startswith(b"HTTP/1.1 413") and b"limit" in reply


def test_a_request_over_the_header_limit_is_431(live):
    status, _, raw = call(live.address, "GET", "/", headers={"X-Big": "y" * httpserver.MAX_HEAD})
    assert status == 431 and "headers" in json.loads(raw)["error"]


def test_a_client_reuses_its_connection(live):
    _, (body,) = sample_canvases(1)
    connection = http.client.HTTPConnection(*live.address, timeout=10)
    sockets = set()
    for _ in range(3):
        connection.request("POST", "/predict", body)
        assert connection.getresponse().read() and connection.sock is not None
        sockets.add(connection.sock)
    connection.close()
    assert len(sockets) == 1


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.long
def test_a_stop_signal_answers_the_request_under_way_and_exits_0(smoke_model, stop):
    digit, label = confident_digit(smoke_model)
    body = canvas_body(on_paper(digit))
    server = LiveServer(smoke_model, "--timeout", "10")
    try:
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body[:100])
        server.wait_for(r"draw a digit", 1)
        time.sleep(0.2)  # the server has the first half
        start = time.monotonic()
        server.process.send_signal(stop)
        server.wait_for(r"stopping: answering 1 request", 5)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=5)
        sock.sendall(body[100:])
        reply = read_until_closed(sock)
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200") and b"Connection: close" in reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["digit"] == label
        assert server.process.wait(timeout=5) == 0
        assert time.monotonic() - start < 5
        assert server.lines[-1] == "stopped"
    finally:
        server.stop()


def test_connections_over_the_bound_are_503(smoke_model):
    classify = load_predictor(smoke_model, batch_size=1)
    httpd = serve.make_server(classify, max_connections=3, timeout=10)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    address = httpd.server_address[:2]
    try:
        held = [http.client.HTTPConnection(*address, timeout=10) for _ in range(3)]
        for connection in held:  # each answered and kept open
            connection.request("GET", "/")
            assert connection.getresponse().read()
        status, _, raw = call(address, "GET", "/")
        assert status == 503 and "busy" in json.loads(raw)["error"]
        held.pop().close()
        deadline = time.monotonic() + 5
        while status == 503 and time.monotonic() < deadline:  # until the server sees the close
            time.sleep(0.01)
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status = int(read_until_closed(sock).split(b" ", 2)[1])
        assert status == 200
        for connection in held:
            connection.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400),
        (b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
        (b"POST /predict HTTP/1.1\r\n\r\n", 411),
        (b"POST /predict HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),  # isdigit(), not int()
        (b"POST /predict HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413),
        (b"PUT /predict HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
    ],
)
def test_malformed_requests_get_an_error_and_a_close(server, head, status):
    with socket.create_connection(server, timeout=10) as sock:
        sock.sendall(head)
        reply = read_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 %d " % status)
    assert b'{"error": ' in reply
