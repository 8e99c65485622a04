"""Align a dataset once and cache the crops: ``python -m training.align --dataset lfw|FOLDER``.

Resumable: re-running continues with the images still pending. Prints how many images each detector
(or the fixed-box fallback) handled and how many failed.
"""

from __future__ import annotations

import argparse
import json

from pvcore.cli import fail, setup_logging
from pvcore.paths import SharedDataMissing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.align", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="lfw",
                    help="'lfw' (default) or an image folder with one sub-folder per identity")
    ap.add_argument("--detector", default="dlib", choices=["dlib", "retinaface"],
                    help="primary face detector; the other one is the fallback (default: dlib)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    ap.add_argument("--limit", type=int, default=None, help="align only the first N images (smoke runs)")
    ap.add_argument("--retry-failed", action="store_true", help="try the images that failed before again")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    setup_logging(args.verbose)

    from training.data.image_folder import EmptyImageFolderError
    from training.face.cache import folder_cache, lfw_cache

    try:
        cache = lfw_cache(args.detector) if args.dataset == "lfw" else folder_cache(args.dataset, args.detector)
    except (SharedDataMissing, FileNotFoundError, EmptyImageFolderError) as e:
        fail(str(e))
    which = None if args.limit is None else range(min(args.limit, len(cache.paths)))
    summary = cache.ensure(which, workers=args.workers, progress=not args.no_progress,
                           retry_failed=args.retry_failed)
    print(json.dumps({"cache": str(cache.dir), "images": len(cache.paths), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
