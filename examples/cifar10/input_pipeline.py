"""CIFAR-10 input pipeline: find or download the official python-format data, batch it, augment it.

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``,
pickled dicts of ``data`` (``uint8 (N, 3072)``: the red, green and blue 32x32 planes) and
``labels``. Batches stay ``uint8``; :func:`preprocess` normalizes and augments on the device.
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
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from examples.cifar10.configs import default

BATCHES_DIR = "cifar-10-batches-py"
FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
# Per-channel mean and standard deviation of the 50,000 training images (0..1 scale).
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32)


class DataError(Exception):
  """The data could not be found, downloaded, verified or read (a one-line message)."""


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 (N, 32, 32, 3)
  labels: np.ndarray  # int32 (N,)

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index) -> Split:
    return Split(self.images[index], self.labels[index])


def read_batch(path: Path) -> Split:
  """One official batch file as NHWC ``uint8`` images and ``int32`` labels."""
  try:
    with open(path, "rb") as f:
      entry = pickle.load(f, encoding="bytes")
    data, labels = np.asarray(entry[b"data"], np.uint8), np.asarray(entry[b"labels"], np.int32)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  except Exception as e:  # pylint: disable=broad-except  # Anything a bad pickle raises.
    raise DataError(f"{path} is not a CIFAR-10 batch file ({type(e).__name__}: {e})") from e
  if len(images) != len(labels) or labels.size and not 0 <= labels.min() <= labels.max() < 10:
    raise DataError(f"{path}: {len(labels)} labels in 0..9 expected for {len(images)} images")
  return Split(np.ascontiguousarray(images), labels)


def read(batches_dir: Path) -> tuple[Split, Split]:
  """``(train, test)`` from a ``cifar-10-batches-py`` directory."""
  parts = [read_batch(batches_dir / name) for name in FILES]
  return (Split(np.concatenate([p.images for p in parts[:-1]]),
                np.concatenate([p.labels for p in parts[:-1]])), parts[-1])


def find(root: str | os.PathLike | None) -> Path | None:
  """``root/cifar-10-batches-py`` (or ``root`` itself) if it holds the six batch files."""
  for candidate in (Path(root) / BATCHES_DIR, Path(root)) if root else ():
    if all((candidate / name).is_file() for name in FILES):
      return candidate
  return None


def _fetch(url: str, dest: Path, progress: bool) -> None:
  try:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
      size = int(response.headers.get("Content-Length") or 0) or None
      with tqdm.wrapattr(response, "read", total=size, desc="download CIFAR-10",
                         disable=not progress, leave=False) as stream:
        shutil.copyfileobj(stream, out, 1 << 20)
  except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
    raise DataError(f"download of {url} failed ({type(e).__name__}: {e})") from e
  if size is not None and dest.stat().st_size != size:
    raise DataError(f"download of {url} is incomplete: {dest.stat().st_size} of {size} bytes")


def download(cache_dir: Path, url: str, md5: str | None, progress: bool = True) -> Path:
  """Downloads, checks and extracts the archive; returns ``cache_dir/cifar-10-batches-py``.

  All or nothing: the archive and its extraction live in a temporary directory inside
  ``cache_dir`` until every batch file has been read, and only then is the batches
  directory renamed into place. A network error, a short read, an MD5 mismatch or a
  corrupt archive raises :class:`DataError` and leaves the cache as it was.
  """
  created = not cache_dir.exists()
  cache_dir.mkdir(parents=True, exist_ok=True)
  try:
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
      archive = Path(tmp) / "cifar-10-python.tar.gz"
      _fetch(url, archive, progress)
      with open(archive, "rb") as f:
        actual = hashlib.file_digest(f, "md5").hexdigest()
      if md5 is not None and actual != md5.lower():
        raise DataError(f"checksum mismatch for {url}: expected MD5 {md5.lower()}, got "
                        f"{actual}; the download is corrupt or partial and was deleted")
      try:
        with tarfile.open(archive, "r:gz") as tar:
          tar.extractall(Path(tmp) / "x", filter="data")
      except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{url} is not a readable CIFAR-10 archive ({type(e).__name__}: "
                        f"{e}); it was deleted") from e
      if (extracted := find(Path(tmp) / "x")) is None:
        raise DataError(f"{url} does not contain {BATCHES_DIR}/ with {', '.join(FILES)}; "
                        "it was deleted")
      read(extracted)  # Every file must read before the cache holds it.
      shutil.rmtree(cache_dir / BATCHES_DIR, ignore_errors=True)  # An incomplete one.
      os.replace(extracted, cache_dir / BATCHES_DIR)
  except BaseException:
    if created:
      shutil.rmtree(cache_dir, ignore_errors=True)
    raise
  return cache_dir / BATCHES_DIR


def locate(config: default.Config) -> Path:
  """The batches directory: in ``config.data_dir``, else in the cache, else downloaded."""
  cache = Path(config.cache_dir) if config.cache_dir else Path(
      os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phaseshift_jax" / "cifar10"
  found = find(config.data_dir) or find(cache)
  if found is not None:
    return found
  if not config.download:
    where = " or ".join(str(p) for p in (config.data_dir, cache) if p)
    raise DataError(f"no {BATCHES_DIR}/ with {', '.join(FILES)} in {where}, and download is off")
  md5 = None if config.data_md5.lower() == "none" else config.data_md5
  return download(cache, config.data_url, md5, config.progress)


def load(config: default.Config, log: Callable[[str], None] | None = None) -> dict[str, Split]:
  """The splits ``train``, ``val`` (with a validation fraction: a random subset of the training
  images drawn from ``config.seed``) and ``test``, cut to ``train_size`` / ``test_size``."""
  train, test = read(locate(config))
  train, test = train.take(slice(config.train_size)), test.take(slice(config.test_size))
  splits = {"train": train, "test": test}
  if config.validation_fraction:
    count = round(len(train) * config.validation_fraction)
    if not 0 < count < len(train):
      raise DataError(f"validation_fraction {config.validation_fraction} of {len(train)} "
                      "training images leaves an empty split")
    order = np.random.default_rng([config.seed, 0x5A11D]).permutation(len(train))
    splits = {"train": train.take(np.sort(order[count:])),
              "val": train.take(np.sort(order[:count])), "test": test}
  if log:
    log("data: " + ", ".join(f"{len(v):,} {k}" for k, v in splits.items()) + " images")
  return splits


def train_batches(split: Split, batch_size: int, seed: int, epoch: int,
                  rows: slice = slice(None)) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Full batches in the shuffled order of ``(seed, epoch)``; the last partial one is dropped.

  ``rows``: only these rows of each batch (a process's share of the global batch; every
  process draws the same order, so the shares make up the batch one process would take).
  """
  order = np.random.default_rng([seed, epoch]).permutation(len(split))
  for start in range(0, len(split) - batch_size + 1, batch_size):
    index = order[start:start + batch_size][rows]
    yield split.images[index], split.labels[index]


def eval_batches(split: Split, batch_size: int, rows: slice = slice(None)
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Every example once, in batches of ``batch_size``: the last is padded and masked
  (``rows``: only these rows of each batch, as in :func:`train_batches`)."""
  for start in range(0, len(split), batch_size):
    index = np.arange(start, start + batch_size)[rows]
    mask = index < len(split)
    images, labels = split.images[index % len(split)], split.labels[index % len(split)]
    images[~mask], labels[~mask] = 0, 0  # Padding: zeros, masked out.
    yield images, labels, mask


def preprocess(images: jax.Array, key: jax.Array | None = None) -> jax.Array:
  """``uint8`` images to normalized ``float32``; with ``key``, a random translation by up to
  4 pixels (the padding is the mean colour) and a horizontal flip, per image."""
  x = (images.astype(jnp.float32) / 255.0 - MEAN) / STD
  if key is None:
    return x
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (len(x), 2), 0, 9)
  padded = jnp.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  x = jax.vmap(lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), x.shape[1:]))(
      padded, offsets)
  flip = jax.random.bernoulli(flip_key, 0.5, (len(x), 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1], x)
