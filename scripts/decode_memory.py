"""Measure the peak resident memory (VmHWM) of `predict` and `serve` on pictures at the caps.

    python scripts/decode_memory.py runs/smoke
    python scripts/decode_memory.py runs/smoke --uploads 8 --folder /tmp/caps

Writes a stroke drawn on white at the largest size each reader takes (`--folder`, a temporary
one by default): 5000x5000 gray PNG, TIFF (LZW), JPEG (baseline) and raw PGM, 4000x4000 colour
PNG, a 2000x2000 WebP, a 168x168 PNG for the baseline, and, for serve, a 4000x4000 colour PNG
of about 4 MB (light noise beside the stroke, so that its body is a large one). Then runs
`python -m mnist_jax predict CHECKPOINT FILE` once per picture in a fresh process and prints
its VmHWM; then starts `mnist-jax serve`, posts the 4 MB picture to /predict/file from
`--uploads` clients at once (8, every large-upload slot) and prints the server's VmHWM before
and after, and its VmRSS after. Loopback only; Linux (/proc).
"""

from __future__ import annotations

import argparse
import http.client
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_serve import start_server  # noqa: E402

# Runs the CLI in this process, then prints its peak resident memory on stderr.
PEAK = (
    "import re, sys; from mnist_jax.cli.app import main; code = main(sys.argv[1:]); "
    "text = open('/proc/self/status').read(); "
    "print('VmHWM', re.search(r'VmHWM:\\s+(\\d+)', text)[1], file=sys.stderr); sys.exit(code)"
)


def stroke(width: int, height: int) -> np.ndarray:
    """(height, width) uint8: a thick dark stroke, like a written 1, on white."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    along = (cols / width - 0.45) - 0.25 * (rows / height - 0.5)  # a slanted line
    inside = (np.abs(along) < 0.03) & (rows > 0.2 * height) & (rows < 0.8 * height)
    return np.where(inside, 0, 255).astype(np.uint8)


def large_upload() -> Image.Image:
    """A 4000x4000 colour picture whose PNG takes about 3.9 MB, under serve's 4 MiB: the
    stroke, and light noise (below the ink threshold) beside it that PNG cannot compress."""
    noisy = np.repeat(stroke(4000, 4000)[..., None], 3, axis=2)
    noisy[1300:2700, 2300:3700] = np.random.default_rng(0).integers(235, 256, (1400, 1400, 3))
    return Image.fromarray(noisy)


def pictures(folder: Path) -> dict[str, Path]:
    """Write the pictures at the caps into `folder`; return them by name."""
    gray = Image.fromarray(stroke(5000, 5000))
    colour = Image.fromarray(stroke(4000, 4000)).convert("RGB")
    files = {
        "png-small": (Image.fromarray(stroke(168, 168)), "png", {}),  # the baseline
        "png-gray-25mp": (gray, "png", {}),
        "tiff-gray-25mp": (gray, "tif", {"compression": "tiff_lzw"}),
        "jpeg-25mp": (gray.convert("RGB"), "jpg", {"quality": 90}),
        "png-rgb-16mp": (colour, "png", {}),
        "webp-4mp": (Image.fromarray(stroke(2000, 2000)).convert("RGB"), "webp", {}),
        "upload-png-rgb-16mp": (large_upload(), "png", {}),
    }
    paths = {}
    for name, (image, suffix, options) in files.items():
        paths[name] = folder / f"{name}.{suffix}"
        image.save(paths[name], **options)
    paths["pgm-gray-25mp"] = folder / "pgm-gray-25mp.pgm"
    paths["pgm-gray-25mp"].write_bytes(b"P5 5000 5000 255\n" + stroke(5000, 5000).tobytes())
    return paths


def predict_peak(checkpoint: str, file: Path) -> tuple[int, str]:
    """VmHWM (kB) of `mnist-jax predict CHECKPOINT FILE` in a fresh process, and its output."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK, "predict", checkpoint, str(file)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    peak = re.search(r"VmHWM (\d+)", done.stderr)
    if peak is None:
        raise SystemExit(f"predict failed on {file}: {done.stderr[-500:]}")
    lines = (done.stdout + done.stderr).splitlines()
    return int(peak[1]), next(line for line in lines if not line.startswith("VmHWM"))


def status(pid: int, field: str) -> int:
    """A number (kB) from /proc/PID/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M)[1])


def serve_peak(checkpoint: str, body: bytes, uploads: int) -> dict[str, object]:
    """Post `body` to /predict/file from `uploads` clients at once; the server's memory."""
    server, host, port = start_server(checkpoint, 120.0)
    try:
        before = status(server.pid, "VmHWM")
        answers: list[int] = []

        def client() -> None:
            connection = http.client.HTTPConnection(host, port, timeout=300)
            connection.request("POST", "/predict/file", body)
            response = connection.getresponse()
            response.read()
            answers.append(response.status)
            connection.close()

        threads = [threading.Thread(target=client) for _ in range(uploads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {
            "statuses": sorted(answers),
            "hwm_before": before,
            "hwm": status(server.pid, "VmHWM"),
            "rss_after": status(server.pid, "VmRSS"),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint or run folder (a 28x28 model)")
    parser.add_argument("--uploads", type=int, default=8, help="uploads posted at once to serve")
    parser.add_argument("--folder", type=Path, help="where to write the pictures (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.folder or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        files = pictures(folder)
        for name, file in files.items():
            if name.startswith("upload"):
                continue
            peak, said = predict_peak(args.checkpoint, file)
            size = file.stat().st_size
            print(f"predict {name:<16} {size:>11,} bytes  VmHWM {peak / 1024:6.0f} MB")
            print(f"    {said}")
        body = files["upload-png-rgb-16mp"].read_bytes()
        found = serve_peak(args.checkpoint, body, args.uploads)
        print(
            f"serve   {args.uploads} x {len(body):,}-byte 4000x4000 RGB PNG at once: statuses "
            f"{found['statuses']}, VmHWM {found['hwm_before'] / 1024:.0f} MB before, "
            f"{found['hwm'] / 1024:.0f} MB peak, VmRSS {found['rss_after'] / 1024:.0f} MB after"
        )


if __name__ == "__main__":
    main()
