"""Resize a folder of images once, into a folder (or a bucket) that training reads fast.

  python scripts/prepare_images.py SOURCE DEST --size=256

Every image under SOURCE (recursive; jpg/png/bmp/gif) is resized on its shorter side to SIZE
(Lanczos) and centre-cropped to SIZE x SIZE, as the input pipeline would do at every epoch, and
written as DEST/<its path under SOURCE>.png. SOURCE and DEST may be local folders or gs:// URLs
(through the project's filesystem layer). Files that do not decode are listed and skipped; files
already in DEST are kept (rerun after an interruption to finish). Then train with
`--config.dataset=image_folder --config.data_dir=DEST --config.image_size=SIZE`.
"""

import argparse
import io
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from PIL import Image  # pylint: disable=g-import-not-at-top

from sintrovae_jax.data import image_files  # pylint: disable=g-import-not-at-top
from sintrovae_jax.io import fs


def square(image: Image.Image, size: int) -> Image.Image:
  """Shorter side to `size`, then the centre `size` x `size`."""
  w, h = image.size
  scale = size / min(w, h)
  new = (max(size, round(w * scale)), max(size, round(h * scale)))
  image = image.resize(new, Image.LANCZOS)
  left, top = (new[0] - size) // 2, (new[1] - size) // 2
  return image.crop((left, top, left + size, top + size))


def prepare(source: str, dest: str, size: int, mode: str = 'RGB') -> dict:
  """Writes the resized images; returns the counts written, kept and skipped (undecodable)."""
  source = fs.absolute(source)
  counts = {'written': 0, 'kept': 0, 'skipped': []}
  for path in image_files.list_image_folder(source):
    relative = os.path.splitext(path[len(source):].lstrip('/'))[0] + '.png'
    target = fs.join(dest, relative)
    if fs.exists(target):
      counts['kept'] += 1
      continue
    try:
      image = image_files.decode_image(fs.read_bytes(path), mode)
    except Exception:  # pylint: disable=broad-except  # not an image after all: listed, skipped
      counts['skipped'].append(path)
      continue
    buffer = io.BytesIO()
    square(image, size).save(buffer, format='PNG')
    fs.write_bytes(target, buffer.getvalue())
    counts['written'] += 1
  return counts


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('source', help='folder (or gs:// URL) of images, searched recursively')
  parser.add_argument('dest', help='folder (or gs:// URL) for the resized PNG files')
  parser.add_argument('--size', type=int, default=256, help='side of the square images')
  parser.add_argument('--grey', action='store_true', help='one channel (e.g. KTH, MNIST-like)')
  args = parser.parse_args(argv)
  if not image_files.list_image_folder(args.source):
    parser.exit(2, f'error: no images ({", ".join(image_files.IMAGE_EXTENSIONS)}) under '
                f'{args.source!r}.\n')
  counts = prepare(args.source, args.dest, args.size, 'L' if args.grey else 'RGB')
  print(f'{counts["written"]} written, {counts["kept"]} already there, '
        f'{len(counts["skipped"])} not images (skipped): {counts["skipped"][:5]}')


if __name__ == '__main__':
  main()
