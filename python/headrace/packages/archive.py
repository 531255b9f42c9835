"""Graph package archives: building them, and opening untrusted ones safely.

A package is a tar archive (gzip or bzip2; ``.tar.gz``, ``.tar.bz2`` or the
seed's ``.cloacina``) with ``package.toml`` in its top folder and Python
source beside it. Everything is checked before anything is written: only
regular files and folders, relative paths without ``..``, and bounded sizes,
file count and compression ratio, so an archive that expands to gigabytes is
refused after reading at most ``max_expanded_bytes``.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from headrace.errors import HeadraceError
from headrace.packages.manifest import parse_manifest

__all__ = ["Limits", "PackageError", "build_package", "extract_package"]

MANIFEST = "package.toml"
_SKIP = {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache"}


class PackageError(HeadraceError, ValueError):
    """An archive that cannot be accepted; ``code`` is a short slug for APIs."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Limits:
    """Every bound on an uploaded package (documented in the README)."""

    max_archive_bytes: int = 10 * 1024 * 1024
    max_files: int = 1000
    max_file_bytes: int = 10 * 1024 * 1024
    max_expanded_bytes: int = 50 * 1024 * 1024
    #: Expanded size over archive size.
    max_ratio: float = 100.0


def _member_path(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if not name or "\x00" in name or "\\" in name:
        raise PackageError(f"archive entry {name!r}: not a valid path", code="bad_path")
    if path.is_absolute() or name.startswith("/") or (len(path.parts) > 0 and ":" in path.parts[0]):
        raise PackageError(f"archive entry {name!r}: absolute paths are not allowed", code="absolute_path")
    if ".." in path.parts:
        raise PackageError(f"archive entry {name!r}: '..' is not allowed", code="path_traversal")
    return path


def _check(data: bytes, limits: Limits) -> tuple[list[tarfile.TarInfo], PurePosixPath]:
    if len(data) > limits.max_archive_bytes:
        raise PackageError(
            f"archive is {len(data):,} bytes; the limit is {limits.max_archive_bytes:,}", code="too_large"
        )
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise PackageError(f"not a tar archive (gzip or bzip2): {e}", code="bad_archive") from None
    members: list[tarfile.TarInfo] = []
    expanded = 0
    with tar:
        while True:
            try:
                member = tar.next()
            except (tarfile.TarError, EOFError, OSError) as e:
                raise PackageError(f"corrupt archive: {e}", code="bad_archive") from None
            if member is None:
                break
            _member_path(member)
            if member.issym() or member.islnk():
                raise PackageError(f"archive entry {member.name!r}: links are not allowed", code="link")
            if not (member.isfile() or member.isdir()):
                raise PackageError(f"archive entry {member.name!r}: only files and folders are allowed", code="special_file")
            if member.size > limits.max_file_bytes:
                raise PackageError(
                    f"archive entry {member.name!r} is {member.size:,} bytes; the limit is {limits.max_file_bytes:,}",
                    code="too_large",
                )
            expanded += member.size
            if expanded > limits.max_expanded_bytes:
                raise PackageError(
                    f"archive expands to more than {limits.max_expanded_bytes:,} bytes", code="too_large"
                )
            if expanded > limits.max_ratio * max(len(data), 1):
                raise PackageError(
                    f"archive expands more than {limits.max_ratio:g} times its size (a compression bomb?)",
                    code="compression_ratio",
                )
            members.append(member)
            if len(members) > limits.max_files:
                raise PackageError(f"archive has more than {limits.max_files} entries", code="too_many_files")
    files = [m for m in members if m.isfile()]
    manifests = [PurePosixPath(m.name) for m in files if PurePosixPath(m.name).name == MANIFEST]
    top = [p for p in manifests if len(p.parts) <= 2]
    if len(top) != 1:
        raise PackageError(
            f"archive must have exactly one {MANIFEST} at its top folder (found {len(top)})", code="no_manifest"
        )
    root = top[0].parent
    for m in members:
        path = _member_path(m)
        if root.parts and path.parts[: len(root.parts)] != root.parts and path != root:
            raise PackageError(f"archive entry {m.name!r} is outside the package folder '{root}'", code="bad_path")
    return members, root


def extract_package(archive: bytes | Path, dest: Path, limits: Limits = Limits()) -> Path:
    """Checks ``archive`` and extracts it into ``dest`` (which must be empty or
    absent). Returns the folder holding ``package.toml``.

    Raises:
        PackageError: what is wrong with the archive (nothing is extracted).
        ManifestError: package.toml is invalid.
    """
    data = archive.read_bytes() if isinstance(archive, Path) else archive
    members, root = _check(data, limits)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        manifest = tar.extractfile(str(root / MANIFEST) if root.parts else MANIFEST)
        assert manifest is not None
        parse_manifest(manifest.read().decode("utf-8", errors="replace"))
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise PackageError(f"destination {dest} is not empty", code="bad_destination")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        # Our checks ran first; the 'data' filter is a second line of defence.
        tar.extractall(dest, members=members, filter="data")
    return dest / Path(*root.parts)


def build_package(source: Path, out: Path | None = None) -> Path:
    """Builds ``<name>-<version>.tar.gz`` from a folder with ``package.toml``
    and its Python source (caches and VCS folders left out). The archive's top
    folder is ``<name>-<version>/``."""
    manifest_file = source / MANIFEST
    if not manifest_file.is_file():
        raise PackageError(f"{source} has no {MANIFEST}", code="no_manifest")
    manifest = parse_manifest(manifest_file.read_text(encoding="utf-8"))
    top = f"{manifest.name}-{manifest.version}"
    out = out or Path(f"{top}.tar.gz")
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and not (_SKIP & set(p.relative_to(source).parts)) and p.suffix != ".pyc"
    )
    with tarfile.open(out, "w:gz") as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=f"{top}/{path.relative_to(source).as_posix()}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as f:
                tar.addfile(info, f)
    return out
