"""The wheel is complete: built, installed into a fresh virtual environment, the README's examples run.

The fresh environment gets the package only from the wheel; its dependencies (jax, optax, flax,
...) are borrowed from the running environment through a ``.pth`` line instead of downloaded, and
that environment's own copy of ``phaseshift_jax`` (an editable install) is not visible there.
"""

import pathlib
import re
import shutil
import site
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


# What the wheel is built from (pyproject.toml names the readme and the license file).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "phaseshift_jax")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> pathlib.Path:
  # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and under
  # pytest-xdist each worker running this module builds at the same time.
  source = tmp_path_factory.mktemp("source")
  for name in SOURCES:
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, source / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    else:
      shutil.copy2(ROOT / name, source / name)
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                  "--no-build-isolation", "--wheel-dir", str(out), str(source)], check=True)
  (path,) = out.glob("phaseshift_jax-*.whl")
  return path


def test_wheel_holds_the_package_its_type_marker_and_license(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "phaseshift_jax").rglob("*.py")}
  assert modules <= set(names)
  assert "phaseshift_jax/py.typed" in names
  assert any(n.endswith("licenses/LICENSE") for n in names)
  assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]


def test_readme_examples_run_from_the_installed_wheel(wheel, tmp_path):
  env_dir = tmp_path / "venv"
  venv.create(env_dir, with_pip=False)
  python = env_dir / "bin" / "python"
  fresh_site = pathlib.Path(subprocess.run(
      [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      check=True, capture_output=True, text=True).stdout.strip())
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                  "--target", str(fresh_site), str(wheel)], check=True)
  (fresh_site / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
  assert len(blocks) >= 3
  script = tmp_path / "readme_examples.py"
  script.write_text("import phaseshift_jax\nprint(phaseshift_jax.__file__)\n"
                    + "\n".join(blocks))
  result = subprocess.run([python, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines()[0].startswith(str(fresh_site)), result.stdout
