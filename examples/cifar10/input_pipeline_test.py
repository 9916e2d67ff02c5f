"""Tests of the input pipeline on files written in the official format and a 127.0.0.1 server."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile

import jax
import numpy as np
import pytest

from examples.cifar10 import input_pipeline as ip
from examples.cifar10.conftest import archive, learnable, tiny_config, write_cifar10


def _split(n: int, seed: int) -> ip.Split:
  rng = np.random.default_rng(seed)
  return ip.Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                  rng.integers(0, 10, n, dtype=np.int32))


def _config(tmp_path, **settings):
  return tiny_config(cache_dir=str(tmp_path / "cache"), **settings)


def test_reads_the_official_layout_from_the_directory_or_its_parent(tmp_path):
  train, test = _split(23, 0), _split(7, 1)
  batches_dir = write_cifar10(tmp_path, train, test)
  with open(batches_dir / "data_batch_1", "rb") as f:  # Red, green, blue 32x32 planes.
    raw = pickle.load(f, encoding="bytes")
  np.testing.assert_array_equal(raw[b"data"][0, 2048:].reshape(32, 32), train.images[0, :, :, 2])
  for root in (tmp_path, batches_dir):
    data = ip.load(_config(tmp_path, data_dir=str(root)))
    np.testing.assert_array_equal(data["train"].images, train.images)
    np.testing.assert_array_equal(data["test"].labels, test.labels)
    assert data["train"].labels.dtype == np.int32 and set(data) == {"train", "test"}


def test_missing_or_unreadable_files_are_errors_naming_them(tmp_path):
  with pytest.raises(ip.DataError, match="download is off"):
    ip.load(_config(tmp_path, data_dir=str(tmp_path / "nowhere")))
  assert not (tmp_path / "cache").exists() and not (tmp_path / "nowhere").exists()
  batches_dir = write_cifar10(tmp_path, _split(10, 0), _split(3, 1))
  (batches_dir / "test_batch").write_bytes(b"not a pickle")
  with pytest.raises(ip.DataError, match="test_batch is not a CIFAR-10 batch file"):
    ip.load(_config(tmp_path, data_dir=str(tmp_path)))
  (batches_dir / "data_batch_3").unlink()
  with pytest.raises(ip.DataError, match="data_batch_3"):
    ip.load(_config(tmp_path, data_dir=str(tmp_path)))


def _download_config(tmp_path, url, body=None, **settings):
  md5 = hashlib.md5(body).hexdigest() if body is not None else "none"
  return _config(tmp_path, data_url=url, data_md5=md5, download=True, **settings)


def test_download_checks_extracts_and_then_uses_the_cache(tmp_path, server):
  base, files, _, hits = server
  train, test = _split(20, 2), _split(6, 3)
  files["/c.tar.gz"] = body = archive(tmp_path / "src", train, test)
  config = _download_config(tmp_path, base + "/c.tar.gz", body,
                            data_dir=str(tmp_path / "empty"))
  data = ip.load(config)
  np.testing.assert_array_equal(data["train"].images, train.images)
  assert [p.name for p in (tmp_path / "cache").iterdir()] == [ip.BATCHES_DIR]
  ip.load(config)  # The cache, not a second download; the data dir is never written to.
  assert hits == ["/c.tar.gz"] and not (tmp_path / "empty").exists()


@pytest.mark.parametrize("case", ["checksum", "truncated", "short_read", "not_gzip",
                                  "no_batches", "bad_batch", "network"])
def test_a_failed_download_is_one_error_and_leaves_the_cache_as_it_was(tmp_path, server, case):
  base, files, lie, _ = server
  body = archive(tmp_path / "src", _split(10, 0), _split(3, 1))
  md5, served, match = hashlib.md5(body).hexdigest(), body, None
  if case == "checksum":
    md5, match = "0" * 32, "checksum mismatch.*deleted"
  elif case == "truncated":  # What a dropped connection leaves.
    served, match = body[:len(body) // 2], "checksum mismatch"
  elif case == "short_read":  # Fewer bytes than the Content-Length header promised.
    lie.add("/c.tar.gz")
    md5, match = None, "incomplete|IncompleteRead"
  elif case == "not_gzip":  # Right length, garbage inside, the MD5 of the garbage.
    served = body[:100] + bytes(len(body) - 100)
    md5, match = hashlib.md5(served).hexdigest(), "not a readable CIFAR-10 archive"
  elif case in ("no_batches", "bad_batch"):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
      src = write_cifar10(tmp_path / "bad", _split(10, 0), _split(3, 1))
      (src / "data_batch_2").write_bytes(b"garbage")
      tar.add(src, arcname=ip.BATCHES_DIR if case == "bad_batch" else "elsewhere")
    served, md5 = buffer.getvalue(), None
    match = "data_batch_2 is not a CIFAR-10" if case == "bad_batch" else "does not contain"
  else:
    match = "download of .* failed.*404"
  if case != "network":
    files["/c.tar.gz"] = served
  config = _config(tmp_path, data_url=base + "/c.tar.gz", data_md5=md5 or "none", download=True)
  with pytest.raises(ip.DataError, match=match):
    ip.load(config)
  assert not (tmp_path / "cache").exists()  # A cache it created is gone again ...
  (tmp_path / "cache").mkdir()
  (tmp_path / "cache" / "keep.txt").write_text("mine")
  with pytest.raises(ip.DataError, match=match):
    ip.load(config)
  assert [p.name for p in (tmp_path / "cache").iterdir()] == ["keep.txt"]  # ... one it had stays.


def test_training_batches_drop_the_last_partial_batch_in_a_seeded_order():
  split = ip.Split(np.zeros((10, 32, 32, 3), np.uint8), np.arange(10, dtype=np.int32))
  batches = list(ip.train_batches(split, 4, seed=3, epoch=2))
  assert [b[0].shape for b in batches] == [(4, 32, 32, 3)] * 2  # 10 // 4; 2 dropped.
  labels = np.concatenate([b[1] for b in batches])
  assert len(set(labels)) == 8
  np.testing.assert_array_equal(labels, np.concatenate(
      [b[1] for b in ip.train_batches(split, 4, seed=3, epoch=2)]))
  other = [np.concatenate([b[1] for b in ip.train_batches(split, 4, s, e)])
           for s, e in ((3, 3), (4, 2))]
  assert all(not np.array_equal(labels, o) for o in other)


def test_evaluation_batches_pad_and_mask_the_last_one():
  split = _split(10, 4)
  batches = list(ip.eval_batches(split, 4))
  assert [int(mask.sum()) for _, _, mask in batches] == [4, 4, 2]
  images, labels, mask = batches[-1]
  assert images.shape == (4, 32, 32, 3) and not images[2:].any() and not mask[2:].any()
  np.testing.assert_array_equal(np.concatenate([b[1][b[2]] for b in batches]), split.labels)


def test_validation_split_is_disjoint_complete_and_seeded(tmp_path):
  train = ip.Split(np.arange(50, dtype=np.uint8)[:, None, None, None] + np.zeros(
      (50, 32, 32, 3), np.uint8), np.arange(50, dtype=np.int32) % 10)
  write_cifar10(tmp_path, train, _split(5, 1))
  config = _config(tmp_path, data_dir=str(tmp_path), validation_fraction=0.2)
  data = ip.load(config)
  assert (len(data["train"]), len(data["val"]), len(data["test"])) == (40, 10, 5)
  ids = np.concatenate([data["train"].images[:, 0, 0, 0], data["val"].images[:, 0, 0, 0]])
  assert sorted(ids) == list(range(50))
  np.testing.assert_array_equal(ip.load(config)["val"].images, data["val"].images)
  other = ip.load(dataclasses.replace(config, seed=1))["val"].images
  assert not np.array_equal(other, data["val"].images)
  assert len(ip.load(dataclasses.replace(config, train_size=20))["train"]) == 16
  with pytest.raises(ip.DataError, match="empty split"):
    ip.load(dataclasses.replace(config, validation_fraction=0.001))


def test_preprocess_normalizes_and_augments_by_translation_and_flip():
  images = learnable(6).images
  x = np.asarray(ip.preprocess(images))
  np.testing.assert_allclose(x, (images / 255.0 - ip.MEAN) / ip.STD, rtol=1e-5, atol=1e-5)
  y = np.asarray(ip.preprocess(images, jax.random.key(0)))
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  for i in range(len(images)):  # Each output is a shift by up to 4 pixels, maybe flipped.
    crops = [padded[i, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9)]
    assert min(np.abs(c - y[i]).max() for c in crops + [c[:, ::-1] for c in crops]) < 1e-6
  assert not np.allclose(y, x)
  np.testing.assert_array_equal(y, np.asarray(ip.preprocess(images, jax.random.key(0))))
