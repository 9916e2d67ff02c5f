"""A throwaway PostgreSQL server: ``initdb`` and ``pg_ctl`` in a temporary directory.

For the tests of the study on PostgreSQL (``conftest.py``'s ``postgres`` fixture) and for
``benchmarks/study_workers.py``. The server listens on 127.0.0.1 at a free port, trusts
local connections, keeps its data in a temporary directory with fsync off, and is stopped
and deleted when the ``with`` block ends, also after an exception. PostgreSQL refuses to run
as root: as root, the server runs as the system user ``phaseshift_pg`` (created if absent,
no home directory, no login shell) through ``runuser``.

``python -m examples.cifar10.postgres_fixture`` starts one, prints its URL and keeps it
until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

USER = "phaseshift_pg"  # The system user that runs the server when we are root.
SUPERUSER = "postgres"  # The database role initdb creates.


class Unavailable(Exception):
  """No PostgreSQL server programs (``initdb``, ``pg_ctl``) on this machine."""


def find_bin() -> Path:
  """The directory of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest
  ``/usr/lib/postgresql/<version>/bin``."""
  if (found := shutil.which("initdb")) and shutil.which("pg_ctl"):
    return Path(os.path.realpath(found)).parent
  debian = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
  if debian := sorted(p for p in debian if p.parent.name.isdigit()):
    return max(debian, key=lambda p: int(p.parent.name))
  raise Unavailable("no PostgreSQL server programs: initdb and pg_ctl are neither on PATH nor "
                    "in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _sbin(name: str) -> str:
  """``name`` on PATH or in /usr/sbin, /sbin (a PATH without them is common)."""
  return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


def _as_server_user() -> list[str]:
  """The command prefix that runs a program as a user PostgreSQL accepts (not root)."""
  if os.geteuid() != 0:
    return []
  try:
    pwd.getpwnam(USER)
  except KeyError:
    added = subprocess.run([_sbin("useradd"), "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", USER], capture_output=True, text=True, check=False)
    try:
      pwd.getpwnam(USER)  # Also when a concurrent test process added it first.
    except KeyError:
      raise RuntimeError(f"useradd {USER} failed: {added.stderr.strip()}") from None
  return [_sbin("runuser"), "-u", USER, "--"]


def _run(command: Sequence[str], timeout: float) -> None:
  done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
  if done.returncode:
    raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n"
                       f"{done.stdout}{done.stderr}")


@contextlib.contextmanager
def server(database: str = "study", timeout: float = 60) -> Iterator[str]:
  """Starts a server with one empty ``database``; yields its SQLAlchemy URL
  (``postgresql://postgres@127.0.0.1:PORT/DATABASE``)."""
  bin_dir = find_bin()
  prefix = _as_server_user()
  # Not under pytest's tmp_path: its parents are private to root, and the server user must
  # reach its directory.
  root = Path(tempfile.mkdtemp(prefix="phaseshift-pg-"))
  data = root / "data"
  started = False
  try:
    if prefix:
      shutil.chown(root, USER)
    port = free_port()
    _run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
          "--encoding=UTF8", "--locale=C", "--no-sync"], timeout)
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
    started = True  # From here on, stop it whatever happens (pg_ctl may time out).
    _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"),
          "-o", options, "-w", "-t", str(int(timeout)), "start"], timeout + 10)
    _run([*prefix, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
          SUPERUSER, database], timeout)
    yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"
  finally:
    if started:
      for mode in ("fast", "immediate"):
        try:
          _run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "-t", "20",
                "stop"], 30)
          break
        except (RuntimeError, subprocess.TimeoutExpired):
          continue
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  with server() as url:
    print(url, flush=True)
    try:
      while True:
        time.sleep(3600)
    except KeyboardInterrupt:
      pass
