"""Copy a folder tree of PNG photos as lossless WebP (the same pixels, ~22 % fewer bytes), checking every pixel.

scripts/race.py reads either format, so a race can resume on a GPU job whose upload (repository, photos and the
saved race state together) is limited, e.g. the photos of docs/data.md beside a 22 MB state of the official code:

    python scripts/pack_photos.py datasets/demo_wallpapers .carry/wallpapers_webp    # train/ and val/ inside
"""
import argparse
import os
import sys

import cv2
import numpy as np


def pack(src: str, dst: str) -> int:
    """Write every ``*.png`` under ``src`` as ``*.webp`` at the same relative path under ``dst``; the file count."""
    count = 0
    for root, _, files in os.walk(src):
        for name in sorted(f for f in files if f.lower().endswith('.png')):
            image = cv2.imread(os.path.join(root, name), cv2.IMREAD_UNCHANGED)
            if image is None:
                raise SystemExit(f'error: cannot read {os.path.join(root, name)}')
            ok, encoded = cv2.imencode('.webp', image, [cv2.IMWRITE_WEBP_QUALITY, 101])  # > 100: lossless
            if not ok or not np.array_equal(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED), image):
                raise SystemExit(f'error: {os.path.join(root, name)} does not survive lossless WebP (alpha or depth?)')
            out_dir = os.path.join(dst, os.path.relpath(root, src))
            os.makedirs(out_dir, exist_ok=True)
            encoded.tofile(os.path.join(out_dir, name[:-4] + '.webp'))
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='folder holding the PNGs (searched recursively)')
    parser.add_argument('dst', help='folder to write the WebPs into (same layout)')
    args = parser.parse_args()
    if not os.path.isdir(args.src):
        raise SystemExit(f'error: {args.src} is not a folder')
    count = pack(args.src, args.dst)
    if not count:
        raise SystemExit(f'error: no PNG under {args.src}')
    print(f'{count} photos written to {args.dst}', file=sys.stderr)


if __name__ == '__main__':
    main()
