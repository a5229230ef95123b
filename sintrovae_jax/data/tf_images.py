"""Image streams through tf.data (TFDS or an image folder): per-host uint8 training batches,
resumable at any step, and unshuffled passes for evaluation and FID. TensorFlow is told to keep
off the accelerators; nothing here touches JAX arrays.
"""

import copy
import logging
import threading
from typing import Iterator, Optional

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from sintrovae_jax.data import kinds
from sintrovae_jax.data.image_files import (IMAGE_EXTENSIONS, check_image_files, decode_image,
                                            list_image_folder)
from sintrovae_jax.data.kinds import DataError, per_host_batch_size
from sintrovae_jax.io import fs

tf.config.set_visible_devices([], 'GPU')  # TensorFlow stays on the CPU; JAX owns accelerators.

_EPOCH_SEED_STRIDE = 1_000_003
_PHASE_SEED_STRIDE = 7_919  # the style variant's phases shuffle with seeds of their own


FILES_CHECKED_AT_START = 64


def tfds_split(config, split: str, shuffle_files: bool = False, shard: bool = True):
  """Loads this host's share of `split` (all of it with `shard=False`), or raises DataError with
  how to prepare the data."""
  name = config.dataset
  host_split = tfds.split_for_jax_process(split, drop_remainder=True) if shard else split
  data_dir = config.data_dir or None
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    ds = builder.as_dataset(split=host_split, shuffle_files=shuffle_files,
                            decoders={'image': tfds.decode.SkipDecoding()})
    num = int(ds.cardinality())
    if num < 0:  # unknown: count once
      num = int(ds.reduce(0, lambda n, _: n + 1))
  except Exception as e:  # pylint: disable=broad-except
    where = f' --data_dir={data_dir}' if data_dir else ''
    how = f'tfds build {name}{where}'
    if name.startswith('celeb_a_hq'):
      how = ('download the CelebA-HQ archives by hand (see README, "Preparing data"), put them in '
             f'the TFDS manual folder, then: tfds build {name}{where} --manual_dir=DIR')
    raise DataError(f'TFDS data set {name!r} split {split!r} is not available ({type(e).__name__}:'
                    f' {str(e)[:300]}). Prepare it first: {how}') from e
  return ds, num


def resize_and_crop(image, size: int, channels: int, as_uint8: bool = False,
                    resize: str = 'bilinear'):
  """A uint8 [H, W, channels] image -> [size, size, channels]: float32 in [0, 1], or uint8.

  Images of another size are resized (shorter side to `size`; `resize` 'bilinear', antialiased,
  or 'area', which for power-of-two factors is the 2x2 averaging of the style variant's reference
  data) and centre-cropped; as uint8 they are then rounded to 8 bits, as a stored image would be.
  """
  image = tf.ensure_shape(image, [None, None, channels])
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  if not (image.shape[0] == size and image.shape[1] == size):
    # Resize the shorter side to `size`, then crop the centre.
    scale = tf.cast(size, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32))
    if resize == 'area':
      image = tf.image.resize(image, [new_h, new_w], method='area')
    else:
      image = tf.image.resize(image, [new_h, new_w], antialias=True)
    image = tf.image.crop_to_bounding_box(image, (new_h - size) // 2, (new_w - size) // 2, size,
                                          size)
    image = tf.clip_by_value(image, 0.0, 255.0)
    if as_uint8:
      image = tf.round(image)  # 8 bits, as a stored image would be
  image = tf.reshape(image, [size, size, channels])
  if as_uint8:
    return tf.cast(image, tf.uint8)
  return tf.cast(image, tf.float32) / 255.0


class DecodeFailures:
  """Counts image files that fail to decode (thread-safe) and stops a stream that never decodes.

  A file can pass the start-up scan and still fail to decode (a truncated JPEG). Each failure is
  counted and logged; when `limit` files fail in a row (every file of this host, at most 1,000),
  the stream stops with a DataError naming the folder and the first bad files, instead of
  spinning forever on an endless stream that never yields a batch.
  """

  def __init__(self, folder: str, limit: int):
    self.folder, self.limit = folder, limit
    self.total, self.in_a_row, self.examples = 0, 0, []
    self.error: Optional[DataError] = None
    self._lock = threading.Lock()

  def succeeded(self) -> None:
    with self._lock:
      self.in_a_row = 0

  def failed(self, path: str, error: Exception) -> None:
    with self._lock:
      self.total += 1
      self.in_a_row += 1
      if len(self.examples) < 3:
        self.examples.append(path)
      if self.total <= 10 or self.total % 100 == 0:
        logging.warning('Skipping undecodable image %s (%s); %d skipped so far.', path,
                        str(error)[:200], self.total)
      if self.in_a_row >= self.limit and self.error is None:
        self.error = DataError(
            f'{self.in_a_row} image files in a row under {self.folder!r} could not be decoded '
            f'(e.g. {self.examples}): no usable images. Remove or repair them.')


# What a decoder says of each record: use it, skip it, or end the stream (nothing decodes).
DECODED, SKIP, STOP = 1, 0, -1


def _pil_decoder(channels: int, failures: DecodeFailures):
  """A tf.data map from a file path (local or a URL, read through `fs`) to (uint8 [H, W, C]
  image, DECODED/SKIP/STOP), decoded with PIL."""
  mode = 'L' if channels == 1 else 'RGB'

  def decode(path):
    path = path.decode() if isinstance(path, bytes) else str(path)
    try:
      im = decode_image(fs.read_bytes(path), mode)
      image = np.asarray(im, np.uint8).reshape(im.size[1], im.size[0], channels)
    except Exception as e:  # pylint: disable=broad-except
      failures.failed(path, e)
      return np.zeros((1, 1, channels), np.uint8), np.int32(STOP if failures.error else SKIP)
    failures.succeeded()
    return image, np.int32(DECODED)

  def tf_decode(path):
    image, status = tf.numpy_function(decode, [path], (tf.uint8, tf.int32), stateful=False)
    image.set_shape([None, None, channels])
    status.set_shape([])
    return image, status

  return tf_decode


def _image_source(config, split: str, shard: bool = True):
  """(raw records of this host, their number, decode: raw -> (image, status), DecodeFailures).

  With `shard`, each host's share of the records; without, all of them (the same on every host).
  """
  channels = kinds.data_shape(config)[-1]
  if config.dataset == 'image_folder':
    # Listed, not read: each host keeps its share and decodes a bounded sample of it now; files
    # that fail later are skipped and counted as they come (DecodeFailures).
    host = list_image_folder(config.data_dir)
    if shard:
      host = host[jax.process_index()::jax.process_count()]
    _, bad = check_image_files(host[:FILES_CHECKED_AT_START])
    if bad:
      logging.warning('Skipping %d unreadable image file(s) in %s, e.g. %s', len(bad),
                      config.data_dir, bad[:3])
      if len(bad) == min(len(host), FILES_CHECKED_AT_START):
        raise DataError(f'None of the first {len(bad)} image files of this host under '
                        f'{config.data_dir!r} can be decoded (e.g. {bad[:3]}): no usable images. '
                        'Remove or repair them.')
      bad = set(bad)
      host = [p for p in host if p not in bad]
    if not host:
      raise DataError(f'No image files (extensions {IMAGE_EXTENSIONS}) under '
                      f'{config.data_dir!r} for this host.')
    failures = DecodeFailures(config.data_dir, min(len(host), 1000))
    return (tf.data.Dataset.from_tensor_slices(host), len(host),
            _pil_decoder(channels, failures), failures)
  ds, num = tfds_split(config, split, shard=shard)

  def decode(raw):
    if raw.dtype == tf.string:
      raw = tf.io.decode_image(raw, channels=channels, expand_animations=False)
    return raw, tf.constant(DECODED)

  return ds.map(lambda ex: ex['image']), num, decode, None


def _not_stopped(image, status):
  del image
  return status != STOP


def _decoded(image, status):
  del image
  return status == DECODED


def _image_only(image, status):
  del status
  return image


def _usable(ds: tf.data.Dataset) -> tf.data.Dataset:
  """(image, status) -> images: ends at a STOP, drops the SKIPs."""
  return ds.take_while(_not_stopped).filter(_decoded).map(_image_only)


class _NumpyBatches:
  """`tfds.as_numpy(ds)`; a stream stopped because nothing decodes raises its DataError.

  `skipped`: image files skipped so far because they did not decode (for the metrics).
  """

  def __init__(self, ds: tf.data.Dataset, failures: Optional[DecodeFailures]):
    self._iterator = iter(tfds.as_numpy(ds))
    self._failures = failures

  @property
  def skipped(self) -> int:
    return self._failures.total if self._failures else 0

  def __iter__(self):
    return self

  def __next__(self) -> np.ndarray:
    try:
      return next(self._iterator)
    except StopIteration:
      if self._failures is not None and self._failures.error is not None:
        raise self._failures.error from None
      raise


def image_batches(config, start_step: int = 0, resize: str = 'bilinear') -> '_NumpyBatches':
  """Shuffled, repeated, batched, prefetched per-host uint8 batches, resumable at `start_step`.

  uint8, a quarter of float32's bytes on the way to the devices; the training program scales them
  to [0, 1] on the device (`inference.to_unit_range`).

  Epoch e is the host's examples shuffled with seed (seed, e); the stream resumes at example
  `start_step * per_host_batch` by skipping at most one epoch's undecoded records.
  """
  size, channels = config.image_size, kinds.data_shape(config)[-1]
  per_host = per_host_batch_size(config)
  source, num, decode, failures = _image_source(config, config.train_split)
  consumed = start_step * per_host
  first_epoch, offset = divmod(consumed, num)
  buffer = min(config.shuffle_buffer, num)

  def epoch(e):
    return source.shuffle(buffer, seed=config.seed * _EPOCH_SEED_STRIDE + e,
                          reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
  ds = tf.data.Dataset.zip(tf.data.Dataset.range(consumed, 2**62), ds)

  def preprocess(index, raw):
    image, status = decode(raw)
    image = resize_and_crop(image, size, channels, as_uint8=True, resize=resize)
    if config.random_flip:
      coin = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(config.seed, tf.int64),
                                                            index]))
      image = tf.cond(coin < 0.5, lambda: tf.image.flip_left_right(image), lambda: image)
    return image, status

  options = tf.data.Options()
  options.deterministic = True
  ds = _usable(ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE))
  ds = ds.batch(per_host, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)
  return _NumpyBatches(ds, failures)


def progressive_batches(config, resolution: int, batch: int, stream: int,
                        start_step: int = 0) -> '_NumpyBatches':
  """The style variant's training batches for one progressive phase: `image_batches` at
  `resolution` (area-averaged from the stored images: one copy of the data serves every
  resolution) and global batch `batch`, shuffled with a seed of their own per `stream` (the
  phase), resumable at `start_step` steps into the phase."""
  phase_config = copy.deepcopy(config)
  phase_config.image_size, phase_config.batch_size = resolution, batch
  phase_config.seed = config.seed + _PHASE_SEED_STRIDE * stream
  return image_batches(phase_config, start_step, resize='area')


def image_pass(config, split: str, limit: int, batch_per_host: int,
               channels: Optional[int] = None, shard: bool = True) -> Iterator[np.ndarray]:
  """One unshuffled, unflipped pass over up to `limit` images of `split` (all hosts together).

  Each host reads the first ceil(limit / hosts) images of its share, in file order, in batches of
  `batch_per_host` (the last one may be smaller); with `shard=False` every host reads the first
  `limit` images of the whole split. For evaluation and FID statistics. `channels` converts the
  images (grey <-> RGB) to another model's channels, for scoring another data set.
  """
  size, native = config.image_size, kinds.data_shape(config)[-1]
  channels = channels or native
  source, _, decode, failures = _image_source(config, split, shard=shard)
  per_host = -(-limit // jax.process_count()) if shard else limit

  def preprocess(raw):
    image, status = decode(raw)
    image = resize_and_crop(image, size, native)
    if channels != native:
      image = (tf.image.grayscale_to_rgb(image) if channels == 3 else
               tf.image.rgb_to_grayscale(image))
    return image, status

  ds = _usable(source.take(per_host).map(preprocess, num_parallel_calls=tf.data.AUTOTUNE))
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.batch(batch_per_host).prefetch(tf.data.AUTOTUNE).with_options(options)
  return _NumpyBatches(ds, failures)


def eval_images(config) -> np.ndarray:
  """The first `num_eval_examples` images of the evaluation split (unshuffled): the same images
  on every host, so the evaluation does not depend on the number of hosts."""
  split = config.eval_split or config.train_split
  return np.concatenate(list(image_pass(config, split, config.num_eval_examples,
                                        batch_per_host=256, shard=False)))
