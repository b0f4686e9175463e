"""The body of scripts/bench-media (see there)."""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TEST_RATE_LIMITS, Api, SynapseServer  # noqa: E402
from media_samples import camera_exif  # noqa: E402

KB, MB = 1000, 1000 * 1000
SIZES = (100 * KB, 5 * MB, 50 * MB)
ROUNDS = {"default": (30, 10, 3), "full": (100, 30, 10), "quick": (10, 4, 0)}
LIMIT = 64 * 1024 * 1024
OVERRIDES = {
    **TEST_RATE_LIMITS,
    "modules": [
        {
            "module": "medchat.MedChatModule",
            "config": {"uploads": {"image": {"max_bytes": LIMIT}, "file": {"max_bytes": LIMIT}}},
        }
    ],
}


def noisy_jpeg(target: int) -> bytes:
    """A camera-like JPEG (with GPS EXIF) of about `target` bytes: noise compresses poorly."""
    bytes_per_pixel = 1.9  # quality-92 noise, measured
    side = max(16, int((target / bytes_per_pixel) ** 0.5))
    while True:
        im = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
        out = io.BytesIO()
        im.save(out, "JPEG", quality=92, exif=camera_exif())
        if out.tell() >= target * 0.9:
            return out.getvalue()
        side = int(side * (target / out.tell()) ** 0.5) + 1


def pdf_like(size: int) -> bytes:
    return b"%PDF-1.7\n" + os.urandom(size - 9)


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def timed_upload(api: Api, token: str, path: str, data: bytes, content_type: str) -> float:
    start = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    response = api.session.post(api.base_url + path, data=data, headers=headers, timeout=300)
    elapsed = time.perf_counter() - start
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description="API vs native upload throughput")
    parser.add_argument("--full", action="store_true", help="more rounds per size")
    parser.add_argument("--quick", action="store_true", help="100 KB and 5 MB only, few rounds")
    parser.add_argument(
        "--target", help="upload to the server (or cluster) already running at this URL (no RSS figures)"
    )
    parser.add_argument("--json", help="also write the 5 MB rows here (for scripts/bench)")
    args = parser.parse_args()
    rounds = ROUNDS["full" if args.full else "quick" if args.quick else "default"]
    if args.target:
        rows = run(args.target.rstrip("/"), None, rounds)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
            server = SynapseServer(Path(tmp), overrides=OVERRIDES)
            server.start()
            try:
                rows = run(server.base_url, server.process.pid, rounds)  # type: ignore[union-attr]
            finally:
                server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(rows))


def run(base_url: str, pid: int | None, rounds: tuple[int, ...]) -> list[dict]:
    """Prints the table; returns scripts/bench's rows (5 MB uploads: MB/s and latency, API vs native)."""
    api = Api(base_url)
    token = api.register()["access_token"]
    rows = []
    if pid:
        print(f"server pid {pid}, baseline RSS {rss_kib(pid, 'VmRSS') / 1024:.0f} MiB")
    print(
        f"{'kind':<6}{'size':>8}{'n':>4}{'native MB/s':>13}{'API MB/s':>10}{'ratio':>7}{'peak RSS native/API (MiB)':>28}"
    )
    for kind, make, ctype in (("file", pdf_like, "application/pdf"), ("image", noisy_jpeg, "image/jpeg")):
        for size, n in zip(SIZES, rounds):
            if not n:
                continue
            data = make(size)
            times: dict[str, list[float]] = {"native": [], "api": []}
            peaks: dict[str, int] = {"native": 0, "api": 0}
            paths = {"native": "/_matrix/media/v3/upload?filename=x", "api": f"/api/chat/upload/{kind}"}
            for _ in range(n):
                for name, path in paths.items():  # interleaved, so drift hits both alike
                    if pid:
                        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM
                    times[name].append(timed_upload(api, token, path, data, ctype))
                    if pid:
                        peaks[name] = max(peaks[name], rss_kib(pid, "VmHWM"))
            native, via_api = statistics.median(times["native"]), statistics.median(times["api"])
            mb = len(data) / MB
            print(
                f"{kind:<6}{mb:>7.1f}M{n:>4}{mb / native:>13.1f}{mb / via_api:>10.1f}{via_api / native:>7.2f}"
                f"{peaks['native'] / 1024:>19.0f} / {peaks['api'] / 1024:.0f}"
            )
            if size == 5 * MB:
                rows.append(upload_row(f"uploads: 5 MB {kind}", mb, times["api"], times["native"]))
    return rows


def upload_row(name: str, mb: float, api: list[float], native: list[float]) -> dict:
    """scripts/bench's row: MB/s at the median, latency percentiles, ratios to native uploads."""

    def pct(values: list[float], p: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {
        "benchmark": name,
        "throughput": mb / statistics.median(api),
        "unit": "MB/s",
        "p50_ms": pct(api, 50) * 1000,
        "p99_ms": pct(api, 99) * 1000,
        "ratio_throughput": statistics.median(native) / statistics.median(api),  # API MB/s ÷ native MB/s
        "ratio_p50": pct(api, 50) / pct(native, 50),
        "ratio_p99": pct(api, 99) / pct(native, 99),
    }


if __name__ == "__main__":
    main()
