"""CIFAR-10 input pipeline: find or download the official python-format data, batch it, augment on device.

The data stays as ``uint8`` on the host; every batch goes to the device(s) as
``uint8`` and is converted, augmented (random crop + horizontal flip) and
normalized there by :func:`preprocess`, inside the jitted step.

Layout of the official data (``cifar-10-python.tar.gz``)::

    cifar-10-batches-py/data_batch_1 .. data_batch_5   (10,000 images each)
    cifar-10-batches-py/test_batch                     (10,000 images)
    cifar-10-batches-py/batches.meta

Each batch file is a pickled dict with ``data`` (``uint8``, ``(N, 3072)``, the
red, green and blue planes of a 32x32 image one after the other) and ``labels``
(``N`` ints in ``0..9``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR-10 page.
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPE = (32, 32, 3)
_EXPECTED = f"{BATCHES_DIR}/ with {', '.join((*TRAIN_FILES, TEST_FILE))}"

# Per-channel mean and standard deviation of the 50,000 training images (0..1 scale).
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


class DataError(Exception):
  """The data could not be found, downloaded, verified or read (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Split:
  """Images ``uint8 (N, 32, 32, 3)`` and labels ``int32 (N,)`` of one split."""

  images: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.shape[1:] != IMAGE_SHAPE:
      raise ValueError(f"images must be uint8 (N, 32, 32, 3), got {self.images.dtype} "
                       f"{self.images.shape}")
    if self.labels.shape != self.images.shape[:1]:
      raise ValueError(f"{len(self.labels)} labels for {len(self.images)} images")

  def __len__(self) -> int:
    return len(self.labels)


def default_cache_dir() -> Path:
  """``$XDG_CACHE_HOME/phaseshift_jax/cifar10`` (``~/.cache/...`` when unset)."""
  root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
  return Path(root) / "phaseshift_jax" / "cifar10"


# ----------------------------------------------------------------------------- reading


def find_batches_dir(root: str | os.PathLike) -> Path | None:
  """``root/cifar-10-batches-py`` (or ``root`` itself) if it holds all six batch files."""
  root = Path(root)
  for candidate in (root / BATCHES_DIR, root):
    if all((candidate / name).is_file() for name in (*TRAIN_FILES, TEST_FILE)):
      return candidate
  return None


def read_batch(path: str | os.PathLike) -> Split:
  """Reads one official batch file into a :class:`Split` (NHWC ``uint8``)."""
  try:
    with open(path, "rb") as f:
      entry = pickle.load(f, encoding="bytes")
    data = np.asarray(entry[b"data"], np.uint8)
    labels = np.asarray(entry[b"labels"], np.int32)
  except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as e:
    raise DataError(f"{path} is not a CIFAR-10 batch file ({type(e).__name__}: {e})") from e
  if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise DataError(f"{path}: expected data of shape (N, 3072) and N labels, got "
                    f"{data.shape} and {len(labels)}")
  if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
    raise DataError(f"{path}: labels outside 0..9")
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return Split(np.ascontiguousarray(images), labels)


def read_cifar10(batches_dir: str | os.PathLike) -> tuple[Split, Split]:
  """Reads ``(train, test)`` from a ``cifar-10-batches-py`` directory."""
  batches_dir = Path(batches_dir)
  parts = [read_batch(batches_dir / name) for name in TRAIN_FILES]
  train = Split(np.concatenate([p.images for p in parts]),
                np.concatenate([p.labels for p in parts]))
  return train, read_batch(batches_dir / TEST_FILE)


def write_batch(path: str | os.PathLike, split: Split, batch_label: str = "") -> None:
  """Writes ``split`` as an official batch file (the inverse of :func:`read_batch`)."""
  entry = {
      b"batch_label": batch_label.encode(),
      b"labels": split.labels.tolist(),
      b"data": split.images.transpose(0, 3, 1, 2).reshape(len(split), 3072),
  }
  with open(path, "wb") as f:
    pickle.dump(entry, f, protocol=2)


def write_cifar10(root: str | os.PathLike, train: Split, test: Split) -> Path:
  """Writes ``root/cifar-10-batches-py`` in the official format; returns that directory.

  ``train`` is cut into five batch files of (nearly) equal size.
  """
  out = Path(root) / BATCHES_DIR
  out.mkdir(parents=True, exist_ok=True)
  for i, index in enumerate(np.array_split(np.arange(len(train)), len(TRAIN_FILES))):
    write_batch(out / TRAIN_FILES[i], Split(train.images[index], train.labels[index]),
                f"training batch {i + 1} of 5")
  write_batch(out / TEST_FILE, test, "testing batch 1 of 1")
  with open(out / "batches.meta", "wb") as f:
    pickle.dump({b"label_names": [c.encode() for c in CLASSES],
                 b"num_cases_per_batch": len(test), b"num_vis": 3072}, f, protocol=2)
  return out


# ---------------------------------------------------------------------------- download


def _md5(path: Path) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "md5").hexdigest()


def _fetch(url: str, dest: Path, progress: bool) -> None:
  """Streams ``url`` into ``dest``; raises DataError on a network error or short read."""
  try:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
      expected = response.headers.get("Content-Length")
      expected = int(expected) if expected else None
      with tqdm.wrapattr(response, "read", total=expected, bytes=False, unit="B",
                         unit_scale=True, desc="download CIFAR-10", disable=not progress,
                         leave=False) as stream:
        shutil.copyfileobj(stream, out, 1 << 20)
      received = out.tell()
  except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
    raise DataError(f"download of {url} failed ({type(e).__name__}: {e})") from e
  if expected is not None and received != expected:
    raise DataError(f"download of {url} is incomplete: got {received} of {expected} bytes")


def download_cifar10(cache_dir: str | os.PathLike, *, url: str = URL, md5: str | None = MD5,
                     progress: bool = True) -> Path:
  """Downloads and extracts the archive into ``cache_dir``; returns the batches directory.

  The archive is written to a temporary file in ``cache_dir``, its MD5 checked
  against ``md5`` (skipped when ``md5`` is None) and only then renamed to
  ``cifar-10-python.tar.gz``; it is extracted into a temporary directory that is
  renamed to ``cifar-10-batches-py`` once complete and readable. Any failure
  (network error, short download, checksum mismatch, corrupt archive) raises
  :class:`DataError` and leaves neither a partial archive nor a partial
  directory behind. A verified archive already in ``cache_dir`` is reused.
  """
  cache_dir = Path(cache_dir)
  created = not cache_dir.exists()
  cache_dir.mkdir(parents=True, exist_ok=True)
  try:
    return _download_into(cache_dir, url, md5, progress)
  except BaseException:
    if created and not any(cache_dir.iterdir()):
      cache_dir.rmdir()  # Leave no trace of a failed first download.
    raise


def _download_into(cache_dir: Path, url: str, md5: str | None, progress: bool) -> Path:
  archive = cache_dir / ARCHIVE_NAME
  if archive.is_file() and md5 is not None and _md5(archive) != md5.lower():
    archive.unlink()  # A stale or corrupt archive: fetch it again.
  if not archive.is_file():
    fd, part_name = tempfile.mkstemp(dir=cache_dir, prefix=f".{ARCHIVE_NAME}.", suffix=".part")
    os.close(fd)
    part = Path(part_name)
    try:
      _fetch(url, part, progress)
      if md5 is not None:
        actual = _md5(part)
        if actual != md5.lower():
          raise DataError(f"checksum mismatch for {url}: expected MD5 {md5.lower()}, got "
                          f"{actual}; the download is corrupt or partial and was deleted")
      os.replace(part, archive)
    finally:
      part.unlink(missing_ok=True)

  staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".extract-"))
  try:
    try:
      with tarfile.open(archive, "r:gz") as tar:
        members = [m for m in tar.getmembers()
                   if m.name == BATCHES_DIR or m.name.startswith(BATCHES_DIR + "/")]
        tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
      archive.unlink(missing_ok=True)
      raise DataError(f"{url} is not a readable CIFAR-10 archive ({type(e).__name__}: {e}); "
                      "it was deleted") from e
    extracted = find_batches_dir(staging)
    if extracted is None:
      archive.unlink(missing_ok=True)
      raise DataError(f"{url} does not contain {_EXPECTED}; it was deleted")
    try:
      read_cifar10(extracted)
    except DataError as e:
      archive.unlink(missing_ok=True)
      raise DataError(f"{url} holds an unreadable batch file ({e}); it was deleted") from e
    target = cache_dir / BATCHES_DIR
    if find_batches_dir(cache_dir) is None:
      if target.exists():
        shutil.rmtree(target)
      os.replace(extracted, target)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return target


def locate_cifar10(data_dir: str | os.PathLike | None = None, *, download: bool = True,
                   cache_dir: str | os.PathLike | None = None, url: str = URL,
                   md5: str | None = MD5, progress: bool = True) -> Path:
  """The ``cifar-10-batches-py`` directory to read: in ``data_dir``, else the cache, else downloaded.

  Looks for ``cifar-10-batches-py/`` in ``data_dir`` (or ``data_dir`` being that
  directory), then in ``cache_dir`` (default :func:`default_cache_dir`). When
  neither holds the data and ``download`` is true, the archive is fetched from
  ``url`` into ``cache_dir`` (see :func:`download_cifar10`); ``data_dir`` itself
  is never written to.

  Raises:
    DataError: the data is missing and ``download`` is false, or any download,
      checksum or extraction error.
  """
  cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
  for root in (data_dir, cache_dir):
    if root is not None and (found := find_batches_dir(root)) is not None:
      return found
  if not download:
    where = f"{data_dir} or {cache_dir}" if data_dir is not None else cache_dir
    raise DataError(f"no CIFAR-10 data in {where} (expected {_EXPECTED}) and download is "
                    "disabled")
  return download_cifar10(cache_dir, url=url, md5=md5, progress=progress)


def load_cifar10(data_dir: str | os.PathLike | None = None, **kwargs) -> tuple[Split, Split]:
  """``(train, test)`` from :func:`locate_cifar10` (same arguments)."""
  return read_cifar10(locate_cifar10(data_dir, **kwargs))


def split_validation(train: Split, fraction: float, seed: int) -> tuple[Split, Split]:
  """Holds out ``fraction`` of ``train`` (a seeded random subset) as a validation split."""
  if not 0 < fraction < 1:
    raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
  count = int(round(len(train) * fraction))
  if not 0 < count < len(train):
    raise ValueError(f"validation fraction {fraction} of {len(train)} images leaves an empty split")
  order = np.random.default_rng([seed, 0x5A11D]).permutation(len(train))
  keep, held = np.sort(order[count:]), np.sort(order[:count])
  return (Split(train.images[keep], train.labels[keep]),
          Split(train.images[held], train.labels[held]))


# ----------------------------------------------------------------------------- batches


@dataclasses.dataclass(frozen=True)
class Batch:
  """A fixed-size batch; ``mask`` is False on the padding rows of the last batch."""

  images: np.ndarray  # uint8 (B, 32, 32, 3)
  labels: np.ndarray  # int32 (B,)
  mask: np.ndarray  # bool (B,)


def num_batches(num_examples: int, batch_size: int) -> int:
  """Batches per epoch: every example once, the last batch padded."""
  return -(-num_examples // batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The shuffled example order of ``epoch``: a function of ``(seed, epoch)`` only."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def batches(split: Split, batch_size: int, *, order: np.ndarray | None = None) -> Iterator[Batch]:
  """Fixed-size batches of ``split`` in ``order`` (default: as stored).

  Every example appears exactly once; the last batch is padded with zero images
  whose ``mask`` is False, so that losses, accuracies and BatchNorm statistics
  can leave them out and nothing is dropped.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  order = np.arange(len(split)) if order is None else order
  for start in range(0, len(order), batch_size):
    index = order[start:start + batch_size]
    pad = batch_size - len(index)
    images, labels = split.images[index], split.labels[index]
    mask = np.ones(batch_size, bool)
    if pad:
      images = np.concatenate([images, np.zeros((pad, *IMAGE_SHAPE), np.uint8)])
      labels = np.concatenate([labels, np.zeros(pad, np.int32)])
      mask[len(index):] = False
    yield Batch(images, labels, mask)


def prefetch(iterator: Iterator[Batch], sharding: jax.sharding.Sharding | None,
             size: int = 2) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
  """Puts batches on the device(s) ``size`` steps ahead (``device_put`` is asynchronous)."""
  queue: list[tuple[jax.Array, jax.Array, jax.Array]] = []
  for batch in iterator:
    queue.append(tuple(jax.device_put(x, sharding)
                       for x in (batch.images, batch.labels, batch.mask)))
    if len(queue) > size:
      yield queue.pop(0)
  yield from queue


# ------------------------------------------------------------------- on-device transforms


def random_crop_and_flip(images: jax.Array, key: jax.Array, padding: int = 4) -> jax.Array:
  """Random ``padding``-pixel translation (zero padding) and horizontal flip, per image."""
  batch, height, width, _ = images.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * padding + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
  padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (height, width, image.shape[-1]))

  cropped = jax.vmap(crop)(padded, offsets)
  return jnp.where(flips[:, None, None, None], cropped[:, :, ::-1], cropped)


def preprocess(images: jax.Array, key: jax.Array | None = None) -> jax.Array:
  """``uint8`` images to normalized ``float32``; with ``key``, also random crop + flip.

  Normalization comes first, so the crop's zero padding is the mean colour.
  """
  x = (images.astype(jnp.float32) / 255.0 - MEAN) / STD
  if key is not None:
    x = random_crop_and_flip(x, key)
  return x
