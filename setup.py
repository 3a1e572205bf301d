"""Builds libmembptt.so with CMake and puts it inside the package (pyproject.toml holds the metadata).

The CMake build folder is build-python/cmake (configured with -DMEMBPTT_CUDA=OFF -DMEMBPTT_BENCH=OFF
plus MEMBPTT_CMAKE_ARGS), or MEMBPTT_CMAKE_BUILD_DIR: an existing, configured build folder of this
checkout, whose library target alone is then built (its configuration is left as it is).
"""
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
GIVEN = os.environ.get("MEMBPTT_CMAKE_BUILD_DIR")
# Where setuptools writes too: build-python/ (ignored by git, /build*/) or the given build folder.
SCRATCH = Path(GIVEN).resolve() / "python-package" if GIVEN else ROOT / "build-python"


def build_library() -> Path:
    build_dir = Path(GIVEN).resolve() if GIVEN else SCRATCH / "cmake"
    if not (build_dir / "CMakeCache.txt").is_file():
        args = ["-DCMAKE_BUILD_TYPE=Release", "-DMEMBPTT_CUDA=OFF", "-DMEMBPTT_BENCH=OFF"]
        args += shlex.split(os.environ.get("MEMBPTT_CMAKE_ARGS", ""))
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), *args], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "membptt_c", "-j", str(os.cpu_count() or 1)],
                   check=True)
    lib = build_dir / "src" / "libmembptt.so"
    if not lib.is_file():
        raise RuntimeError(f"membptt: the build did not produce {lib}")
    return lib


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        dest = Path(self.build_lib) / "membptt"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(build_library(), dest / "libmembptt.so")


class BinaryDistribution(Distribution):
    """The wheel holds a shared library: it is platform-specific."""

    def has_ext_modules(self):
        return True


SCRATCH.mkdir(parents=True, exist_ok=True)
setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution,
      options={"build": {"build_base": str(SCRATCH / "setuptools")}, "egg_info": {"egg_base": str(SCRATCH)}})
