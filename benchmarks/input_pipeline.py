"""Host input throughput: images per second per host through our tf.data pipelines.

Two sources per resolution, with generated pictures (smooth noise, so JPEG/PNG sizes are
realistic rather than incompressible):
- `folder`: an image folder read by `tf_images.image_batches` (list, PIL decode in
  tf.data, resize/crop when the stored size differs, flip, batch to uint8), the path of
  `configs/image_folder.py` and of FFHQ-style data;
- `tfds-like`: the same pictures as encoded bytes in memory, decoded by `tf.io.decode_image` as
  the TFDS path does (TFDS adds reading its record files, which is not timed here).

  python benchmarks/input_pipeline.py --sizes=32,128,256,1024 --batches=20

Prints a Markdown table with the machine's core count; compare with what a chip consumes
(docs/benchmarks.md) to see how many host cores a chip needs.
"""

import argparse
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from PIL import Image  # pylint: disable=g-import-not-at-top

from configs import image_folder  # pylint: disable=g-import-not-at-top
from sintrovae_jax.data import pipeline as input_pipeline, tf_images  # pylint: disable=g-import-not-at-top


def pictures(num: int, size: int, rng) -> list:
  """Smooth random colour pictures: upsampled noise plus a little grain."""
  out = []
  for _ in range(num):
    coarse = rng.uniform(0, 255, (max(2, size // 16), max(2, size // 16), 3))
    image = np.asarray(Image.fromarray(coarse.astype(np.uint8)).resize((size, size),
                                                                       Image.BILINEAR))
    grain = rng.normal(0, 4, image.shape)
    out.append(np.clip(image + grain, 0, 255).astype(np.uint8))
  return out


def encode(image: np.ndarray, fmt: str) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, fmt, **({'quality': 95} if fmt == 'JPEG' else {}))
  return buffer.getvalue()


def time_batches(iterator, batches: int) -> float:
  next(iterator)  # warm-up: the pipeline's first batch includes its start
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes', default='32,128,256,1024')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--batches', type=int, default=20)
  parser.add_argument('--formats', default='JPEG,PNG')
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f'{os.cpu_count()} CPU cores; batch {args.batch}; {args.batches} batches timed after one')
  print('| source | format | stored px | trained px | images/s per host |')
  print('|---|---|---|---|---|')
  for size in [int(s) for s in args.sizes.split(',')]:
    images = pictures(min(64, args.batch * 2), size, rng)
    for fmt in args.formats.split(','):
      blobs = [encode(im, fmt) for im in images]
      with tempfile.TemporaryDirectory() as folder:
        for i, blob in enumerate(blobs):
          with open(os.path.join(folder, f'{i:05d}.{fmt.lower()}'), 'wb') as f:
            f.write(blob)
        config = image_folder.get_config()
        config.update(dict(data_dir=folder, image_size=size, batch_size=args.batch,
                           shuffle_buffer=len(blobs), random_flip=True))
        seconds = time_batches(input_pipeline.train_iterator(config), args.batches)
        print(f'| folder | {fmt} | {size} | {size} | {args.batches * args.batch / seconds:,.0f} |')

      def decode(blob, size=size):
        image = tf.io.decode_image(blob, channels=3, expand_animations=False)
        return tf_images.resize_and_crop(image, size, 3, as_uint8=True)

      ds = (tf.data.Dataset.from_tensor_slices(blobs).repeat()
            .map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(args.batch)
            .prefetch(tf.data.AUTOTUNE))
      seconds = time_batches(iter(ds), args.batches)
      print(f'| tfds-like | {fmt} | {size} | {size} | {args.batches * args.batch / seconds:,.0f} |')
      sys.stdout.flush()


if __name__ == '__main__':
  main()
