import base64
import http.client
import json
import shutil
import socket
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_jax import serve
from mnist_jax.cli import app
from mnist_jax.inference import load_predictor
from tests.test_preprocess import on_paper
from tests.trained_model import confident_digit, trained_smoke_model  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def server(smoke_model):
    httpd = serve.make_server(load_predictor(smoke_model, batch_size=1), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def call(address, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection(*address, timeout=30)
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
    status, _, raw = call(server, "POST", "/predict", b"x" * (serve.MAX_BODY + 1))
    assert status == 413
    assert "limit" in json.loads(raw)["error"]


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
