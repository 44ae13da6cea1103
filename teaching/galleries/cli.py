"""The command line: ``python -m teaching.galleries download [--cache DIR] [--group ID]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from teaching.galleries.download import download_gallery
from teaching.galleries.groups import GalleryError, default_cache_dir, load_groups


def _print_progress(done: int, total: int, label: str) -> None:
    filled = 30 * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {label[:48]:<48}")
    sys.stderr.write("\n" if done == total else "")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """``python -m teaching.galleries download [--cache DIR] [--group ID]``: 0 when every photo is ready."""
    parser = argparse.ArgumentParser(prog="python -m teaching.galleries", description="Manage the photo galleries.")
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="download the gallery photos into the cache")
    download.add_argument("--cache", type=Path, help="cache folder (default: $TEACHING_CACHE_DIR or ~/.cache/...)")
    download.add_argument("--group", action="append", help="only this group id (repeatable)")
    args = parser.parse_args(argv)
    try:
        groups = load_groups()
        unknown = sorted(set(args.group or ()) - set(groups))
        if unknown:
            raise GalleryError(f"unknown group '{unknown[0]}' (known: {', '.join(groups)})")
    except GalleryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chosen = [groups[g] for g in args.group] if args.group else list(groups.values())
    cache = args.cache or default_cache_dir()
    status = download_gallery(chosen, cache, progress=_print_progress)
    missing = {k: v for k, v in status.items() if v.startswith("missing")}
    print(f"{len(status) - len(missing)} photos ready in {cache}, {len(missing)} missing")
    for photo_id, reason in missing.items():
        print(f"  {photo_id}: {reason}")
    return 1 if missing else 0
