"""The grids as files for the page: JPEG to show, PNG to download, in one temp folder named by content.

A server runs for days, so the folder is swept of files older than an hour; to spare a busy server a folder listing
on every request, it is swept at most once a minute (`TempStore` keeps the time of its last sweep).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from teaching.render import to_png_bytes

JPEG_QUALITY = 90  # the grids as shown in the page (the download stays PNG)
FOLDER = "teaching-app"  # under the system's temp folder
MAX_AGE_S = 3600  # files older than this are removed
SWEEP_EVERY_S = 60  # the folder is listed at most this often


class TempStore:
    """Files under the temp folder named by a hash of their bytes, with old files swept at most once a minute."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_sweep = 0.0  # time.time() of the last sweep (0: never)

    def save(self, data: bytes, prefix: str, suffix: str) -> Path:
        """Write bytes as `<prefix>-<hash>.<suffix>` (once per content) and return the path; sweep when due."""
        folder = Path(tempfile.gettempdir()) / FOLDER
        folder.mkdir(exist_ok=True)
        path = folder / f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
        if not path.exists():
            path.write_bytes(data)
        now = time.time()
        if self._sweep_due(now):
            for old in folder.iterdir():
                try:
                    if old != path and old.stat().st_mtime < now - MAX_AGE_S:
                        old.unlink(missing_ok=True)
                except OSError:  # removed by another thread meanwhile
                    continue
        return path

    def _sweep_due(self, now: float) -> bool:
        """True for one caller when SWEEP_EVERY_S have passed since the last sweep (which then starts now)."""
        with self._lock:
            if now - self._last_sweep <= SWEEP_EVERY_S:
                return False
            self._last_sweep = now
            return True


_store = TempStore()


def save_png(image: Image.Image, prefix: str = "grid") -> Path:
    """Write the image as PNG (for download) into this process's temp folder and return the path."""
    return _store.save(to_png_bytes(image, compress_level=1), prefix, "png")  # level 1: twice as fast as 6, larger


def save_jpeg(image: Image.Image, prefix: str = "grid") -> Path:
    """Write the image as JPEG (for display: 15x faster to encode than PNG and a third of the bytes to send)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return _store.save(buf.getvalue(), prefix, "jpg")
