"""Test fixtures: small data sets in the official format, the real subset, a local HTTP server,
a throwaway PostgreSQL server."""

from __future__ import annotations

import dataclasses
import http.server
import io
import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from examples.cifar10 import input_pipeline as ip
from examples.cifar10.configs import default

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset"


def learnable(n: int, seed: int = 0) -> ip.Split:
  """Random images whose colour depends on the label: learnable, but not at once."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n, dtype=np.int32)
  base = (labels[:, None] * 25 + np.arange(3) * 10)[:, None, None, :]
  images = np.clip(base + rng.integers(0, 120, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
  return ip.Split(images, labels)


def write_cifar10(root: Path, train: ip.Split, test: ip.Split) -> Path:
  """``root/cifar-10-batches-py`` in the official format (train cut into five files)."""
  out = root / ip.BATCHES_DIR
  out.mkdir(parents=True, exist_ok=True)
  parts = [train.take(i) for i in np.array_split(np.arange(len(train)), 5)] + [test]
  for name, part in zip(ip.FILES, parts):
    with open(out / name, "wb") as f:
      pickle.dump({b"batch_label": name.encode(), b"labels": part.labels.tolist(),
                   b"data": part.images.transpose(0, 3, 1, 2).reshape(len(part), 3072)},
                  f, protocol=2)
  return out


def archive(root: Path, train: ip.Split, test: ip.Split) -> bytes:
  """A ``cifar-10-python.tar.gz`` of ``train`` and ``test``, as bytes."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
    tar.add(write_cifar10(root, train, test), arcname=ip.BATCHES_DIR)
  return buffer.getvalue()


def tiny_config(**settings) -> default.Config:
  """A config that trains in seconds: width 4, small batches, no progress bar."""
  return dataclasses.replace(default.Config(), **{
      "width": 4, "epochs": 1, "batch_size": 32, "eval_batch_size": 64, "progress": False,
      "download": False, **settings})


@pytest.fixture(scope="session")
def subset():
  """The real CIFAR-10 subset beside the repository; a test using it skips (saying so) when
  it is absent."""
  if ip.find(SUBSET) is None:
    pytest.skip(f"no CIFAR-10 subset at {SUBSET} (../shared/data/cifar-10-subset)")
  return SUBSET


@pytest.fixture
def server():
  """Serves ``files[path] = bytes`` on 127.0.0.1; paths in ``lie`` claim 1000 bytes more."""
  files: dict[str, bytes] = {}
  lie: set[str] = set()
  hits: list[str] = []

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server name)
      hits.append(self.path)
      if (body := files.get(self.path)) is None:
        self.send_error(404)
        return
      self.send_response(200)
      self.send_header("Content-Length", str(len(body) + 1000 * (self.path in lie)))
      self.end_headers()
      self.wfile.write(body)
      self.close_connection = True

    def log_message(self, *args):
      del args

  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{httpd.server_address[1]}", files, lie, hits
  httpd.shutdown()
  httpd.server_close()
  thread.join()


def require_postgres(server: bool = True) -> None:
  """Skips the test, saying why, where psycopg (the ``postgres`` extra) or, if ``server``,
  PostgreSQL's ``initdb`` / ``pg_ctl`` are missing; under CI (``CI`` set) fails instead."""
  from examples.cifar10 import postgres_fixture  # pylint: disable=import-outside-toplevel
  try:
    import psycopg  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    if server:
      postgres_fixture.find_bin()
  except (ImportError, postgres_fixture.Unavailable) as e:
    message = f"PostgreSQL test: {e} (pip install -e '.[postgres]'; apt-get install postgresql)"
    if os.environ.get("CI"):
      pytest.fail(f"{message}; under CI, where make test installs the extra and .ci/run "
                  "PostgreSQL, it must not skip")
    pytest.skip(message)


@pytest.fixture
def postgres():
  """The URL ``postgresql://postgres@127.0.0.1:PORT/study`` of an empty database on a
  PostgreSQL server of its own (``postgres_fixture.server``), stopped afterwards."""
  require_postgres()
  from examples.cifar10 import postgres_fixture  # pylint: disable=import-outside-toplevel
  with postgres_fixture.server() as url:
    yield url
