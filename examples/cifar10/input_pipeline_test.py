"""Tests of the CIFAR-10 input pipeline on small files written in the official format."""

from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from examples.cifar10 import input_pipeline as ip


def _split(n: int, seed: int) -> ip.Split:
  rng = np.random.default_rng(seed)
  return ip.Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                  rng.integers(0, 10, n, dtype=np.int32))


def _archive(tmp_path: Path, train: ip.Split, test: ip.Split) -> bytes:
  """A cifar-10-python.tar.gz holding ``train`` and ``test``, as bytes."""
  src = ip.write_cifar10(tmp_path / "src", train, test)
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    tar.add(src, arcname=ip.BATCHES_DIR)
  return buffer.getvalue()


@pytest.fixture
def server():
  """Serves ``files[path] = bytes`` on 127.0.0.1; ``lie`` paths claim a larger length."""
  files: dict[str, bytes] = {}
  lie: set[str] = set()
  hits: list[str] = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server name)
      hits.append(self.path)
      body = files.get(self.path)
      if body is None:
        self.send_error(404)
        return
      self.send_response(200)
      self.send_header("Content-Length", str(len(body) + (1000 if self.path in lie else 0)))
      self.end_headers()
      self.wfile.write(body)
      if self.path in lie:
        self.close_connection = True

    def log_message(self, *args):
      del args

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  base = f"http://127.0.0.1:{httpd.server_address[1]}"
  yield base, files, lie, hits
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def test_write_read_round_trip_and_official_layout(tmp_path):
  train, test = _split(23, 0), _split(7, 1)
  batches_dir = ip.write_cifar10(tmp_path, train, test)
  # The official layout: each row holds the red, then green, then blue 32x32 plane.
  with open(batches_dir / "data_batch_1", "rb") as f:
    raw = pickle.load(f, encoding="bytes")
  assert raw[b"data"].shape == (5, 3072)
  np.testing.assert_array_equal(raw[b"data"][0, :1024].reshape(32, 32), train.images[0, :, :, 0])
  np.testing.assert_array_equal(raw[b"data"][0, 2048:].reshape(32, 32), train.images[0, :, :, 2])
  # Loads from the parent directory and from the batches directory itself.
  for root in (tmp_path, batches_dir):
    got_train, got_test = ip.load_cifar10(root, download=False)
    np.testing.assert_array_equal(got_train.images, train.images)
    np.testing.assert_array_equal(got_train.labels, train.labels)
    np.testing.assert_array_equal(got_test.images, test.images)
    assert got_train.labels.dtype == np.int32


def test_missing_data_without_download_is_an_error(tmp_path):
  with pytest.raises(ip.DataError, match="download is disabled"):
    ip.load_cifar10(tmp_path / "nowhere", download=False, cache_dir=tmp_path / "cache")
  assert not (tmp_path / "cache").exists()
  batches_dir = ip.write_cifar10(tmp_path, _split(10, 0), _split(3, 1))
  (batches_dir / "data_batch_3").unlink()
  with pytest.raises(ip.DataError, match="data_batch_3"):
    ip.load_cifar10(tmp_path, download=False, cache_dir=tmp_path / "cache")
  assert not (tmp_path / "nowhere").exists()


def test_unreadable_batch_file_names_the_file(tmp_path):
  batches_dir = ip.write_cifar10(tmp_path, _split(10, 0), _split(3, 1))
  (batches_dir / "test_batch").write_bytes(b"not a pickle")
  with pytest.raises(ip.DataError, match="test_batch"):
    ip.load_cifar10(tmp_path, download=False, cache_dir=tmp_path / "cache")


def test_download_verifies_extracts_and_then_uses_the_cache(tmp_path, server):
  base, files, _, hits = server
  train, test = _split(20, 2), _split(6, 3)
  body = _archive(tmp_path, train, test)
  files["/c.tar.gz"] = body
  cache = tmp_path / "cache"
  got_train, got_test = ip.load_cifar10(cache_dir=cache, url=base + "/c.tar.gz",
                                        md5=hashlib.md5(body).hexdigest(), progress=False)
  np.testing.assert_array_equal(got_train.images, train.images)
  np.testing.assert_array_equal(got_test.labels, test.labels)
  assert sorted(p.name for p in cache.iterdir()) == sorted([ip.ARCHIVE_NAME, ip.BATCHES_DIR])
  assert (cache / ip.ARCHIVE_NAME).read_bytes() == body
  # A second load reads the cache and does not download again.
  ip.load_cifar10(cache_dir=cache, url=base + "/c.tar.gz", progress=False)
  assert hits == ["/c.tar.gz"]
  # A data directory without the data falls back to the cache; it is never written to.
  data_dir = tmp_path / "data"
  found = ip.locate_cifar10(data_dir, cache_dir=cache, url=base + "/c.tar.gz", progress=False)
  assert found == cache / ip.BATCHES_DIR and not data_dir.exists() and len(hits) == 1


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, server):
  base, files, _, _ = server
  body = _archive(tmp_path, _split(10, 0), _split(3, 1))
  files["/c.tar.gz"] = body
  cache = tmp_path / "cache"
  with pytest.raises(ip.DataError, match="checksum mismatch.*deleted"):
    ip.load_cifar10(cache_dir=cache, url=base + "/c.tar.gz", md5="0" * 32, progress=False)
  assert not cache.exists()
  # In an existing cache directory, only what was there before remains.
  cache.mkdir()
  (cache / "keep.txt").write_text("mine")
  with pytest.raises(ip.DataError, match="checksum mismatch"):
    ip.download_cifar10(cache, url=base + "/c.tar.gz", md5="0" * 32, progress=False)
  assert [p.name for p in cache.iterdir()] == ["keep.txt"]


def test_truncated_download_fails_the_checksum(tmp_path, server):
  base, files, _, _ = server
  body = _archive(tmp_path, _split(10, 0), _split(3, 1))
  files["/c.tar.gz"] = body[: len(body) // 2]  # What a dropped connection leaves.
  cache = tmp_path / "cache"
  with pytest.raises(ip.DataError, match="checksum mismatch"):
    ip.download_cifar10(cache, url=base + "/c.tar.gz", md5=hashlib.md5(body).hexdigest(),
                        progress=False)
  assert not cache.exists()


def test_short_read_against_content_length_is_an_error(tmp_path, server):
  base, files, lie, _ = server
  body = _archive(tmp_path, _split(10, 0), _split(3, 1))
  files["/c.tar.gz"] = body
  lie.add("/c.tar.gz")
  cache = tmp_path / "cache"
  with pytest.raises(ip.DataError, match="incomplete|IncompleteRead"):
    ip.download_cifar10(cache, url=base + "/c.tar.gz", md5=None, progress=False)
  assert not cache.exists()


def test_corrupt_archive_is_an_error_and_leaves_nothing(tmp_path, server):
  base, files, _, _ = server
  body = _archive(tmp_path, _split(10, 0), _split(3, 1))
  corrupt = body[:100] + bytes(len(body) - 100)  # Right length, garbage inside.
  files["/c.tar.gz"] = corrupt
  cache = tmp_path / "cache"
  # The checksum matches what is served (a bad --data-md5), so extraction must catch it.
  with pytest.raises(ip.DataError, match="not a readable CIFAR-10 archive"):
    ip.download_cifar10(cache, url=base + "/c.tar.gz", md5=hashlib.md5(corrupt).hexdigest(),
                        progress=False)
  assert not cache.exists()
  # An archive that is fine as gzip/tar but lacks the batch files.
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    info = tarfile.TarInfo("something/else.txt")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"abc"))
  files["/other.tar.gz"] = buffer.getvalue()
  with pytest.raises(ip.DataError, match="does not contain"):
    ip.download_cifar10(cache, url=base + "/other.tar.gz", md5=None, progress=False)
  assert not cache.exists()
  # The right files, but one of them is not a batch.
  src = ip.write_cifar10(tmp_path / "bad", _split(10, 0), _split(3, 1))
  (src / "data_batch_2").write_bytes(b"garbage")
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    tar.add(src, arcname=ip.BATCHES_DIR)
  files["/bad.tar.gz"] = buffer.getvalue()
  with pytest.raises(ip.DataError, match="unreadable batch file.*data_batch_2"):
    ip.download_cifar10(cache, url=base + "/bad.tar.gz", md5=None, progress=False)
  assert not cache.exists()


def test_network_error_is_a_one_line_data_error(tmp_path, server):
  base, _, _, _ = server
  with pytest.raises(ip.DataError, match="download of .* failed"):
    ip.download_cifar10(tmp_path / "cache", url=base + "/missing.tar.gz", progress=False)
  assert not (tmp_path / "cache").exists()


def test_batches_cover_every_example_once_and_pad_the_last():
  split = _split(10, 4)
  order = ip.epoch_order(10, seed=3, epoch=2)
  got = list(ip.batches(split, 4, order=order))
  assert [b.images.shape for b in got] == [(4, 32, 32, 3)] * 3
  assert [int(b.mask.sum()) for b in got] == [4, 4, 2]
  assert not got[-1].images[2:].any() and not got[-1].mask[2:].any()
  seen = np.concatenate([b.labels[b.mask] for b in got])
  np.testing.assert_array_equal(seen, split.labels[order])
  assert ip.num_batches(10, 4) == 3 and ip.num_batches(8, 4) == 2


def test_epoch_order_depends_on_seed_and_epoch_only():
  a = ip.epoch_order(100, seed=1, epoch=1)
  np.testing.assert_array_equal(a, ip.epoch_order(100, seed=1, epoch=1))
  assert sorted(a) == list(range(100))
  assert not np.array_equal(a, ip.epoch_order(100, seed=1, epoch=2))
  assert not np.array_equal(a, ip.epoch_order(100, seed=2, epoch=1))


def test_split_validation_is_disjoint_complete_and_seeded():
  split = ip.Split(np.zeros((50, 32, 32, 3), np.uint8), np.arange(50, dtype=np.int32) % 10)
  split = ip.Split(split.images + np.arange(50, dtype=np.uint8)[:, None, None, None],
                   split.labels)
  train, val = ip.split_validation(split, 0.2, seed=0)
  assert (len(train), len(val)) == (40, 10)
  ids = np.concatenate([train.images[:, 0, 0, 0], val.images[:, 0, 0, 0]])
  assert sorted(ids) == list(range(50))
  _, val_again = ip.split_validation(split, 0.2, seed=0)
  np.testing.assert_array_equal(val.images, val_again.images)
  with pytest.raises(ValueError, match="fraction"):
    ip.split_validation(split, 1.0, seed=0)


def test_preprocess_normalizes_and_augments_by_translation_and_flip():
  images = _split(6, 5).images
  x = np.asarray(ip.preprocess(images))
  expected = (images / 255.0 - ip.MEAN) / ip.STD
  np.testing.assert_allclose(x, expected, rtol=1e-5, atol=1e-5)
  y = np.asarray(ip.preprocess(images, jax.random.key(0)))
  assert y.shape == x.shape
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for i in range(len(images)):  # Each output is some 4-pixel shift of its image, maybe flipped.
    crops = [padded[i, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
    crops += [c[:, ::-1] for c in crops]
    assert min(np.abs(c - y[i]).max() for c in crops) < 1e-6
  assert not np.allclose(y, x)  # Augmentation changed something.
  np.testing.assert_array_equal(y, np.asarray(ip.preprocess(images, jax.random.key(0))))
