"""Build step of the eplb wheel: puts the native library into the package (eplb/_lib/).

The library comes from $EPLB_LIBRARY when set (a prebuilt libeplb.so / .dylib / .dll), otherwise
from `cargo build --release --lib` run in the repository root (this directory's parent); cargo's
target directory is asked from `cargo metadata`, so CARGO_TARGET_DIR and .cargo/config apply.
The wheel is tagged for the platform (py3-none-<platform>): it holds a native library but no
Python extension, so any Python 3 on that platform can use it. $EPLB_BUILD_DIR, when set, holds
setuptools' scratch directories instead of python/build and python/eplb.egg-info.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def library_file_name():
    if sys.platform == "darwin":
        return "libeplb.dylib"
    if sys.platform == "win32":
        return "eplb.dll"
    return "libeplb.so"


def crate_version():
    cargo_toml = REPO / "Cargo.toml"
    if not cargo_toml.is_file():
        sys.exit(f"eplb: {cargo_toml} not found; build the package from the eplb repository (pip install ./python)")
    match = re.search(r'^version\s*=\s*"([^"]+)"', cargo_toml.read_text(), re.MULTILINE)
    if not match:
        sys.exit(f"eplb: no version in {cargo_toml}")
    return match.group(1)


def native_library():
    prebuilt = os.environ.get("EPLB_LIBRARY")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            sys.exit(f"eplb: EPLB_LIBRARY={prebuilt} is not a file")
        print(f"eplb: using the prebuilt library {path}")
        return path
    cargo = os.environ.get("CARGO", "cargo")
    manifest = str(REPO / "Cargo.toml")
    print(f"eplb: cargo build --release --lib --manifest-path {manifest}")
    try:
        subprocess.run([cargo, "build", "--release", "--lib", "--manifest-path", manifest], cwd=REPO, check=True)
        meta = subprocess.run(
            [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", manifest],
            cwd=REPO, check=True, stdout=subprocess.PIPE,
        )
    except FileNotFoundError:
        sys.exit("eplb: cargo not found; install Rust (https://rustup.rs) or set EPLB_LIBRARY to a built libeplb")
    except subprocess.CalledProcessError as err:
        sys.exit(f"eplb: {' '.join(err.cmd)} failed with exit code {err.returncode}")
    target = Path(json.loads(meta.stdout)["target_directory"])
    path = target / "release" / library_file_name()
    if not path.is_file():
        sys.exit(f"eplb: cargo finished but {path} does not exist")
    return path


class build_py(_build_py):
    def run(self):
        super().run()
        library = native_library()
        if getattr(self, "editable_mode", False):
            destination = HERE / "eplb" / "_lib"  # editable installs import from the source tree
        else:
            destination = Path(self.build_lib) / "eplb" / "_lib"
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library, destination / library_file_name())


commands = {"build_py": build_py}

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:
        _bdist_wheel = None

if _bdist_wheel is not None:

    class bdist_wheel(_bdist_wheel):
        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False  # platform wheel: it carries a native library

        def get_tag(self):
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    commands["bdist_wheel"] = bdist_wheel

# EPLB_BUILD_DIR moves setuptools' scratch directories (build/, *.egg-info) out of python/; the
# repository's pip-install test uses it so that it leaves the source tree alone.
options = {}
if os.environ.get("EPLB_BUILD_DIR"):
    scratch = Path(os.environ["EPLB_BUILD_DIR"]).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    options = {"build": {"build_base": str(scratch / "build")}, "egg_info": {"egg_base": str(scratch)}}

setup(version=crate_version(), cmdclass=commands, options=options)
