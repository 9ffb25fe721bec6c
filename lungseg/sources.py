"""Where ``lungseg predict`` reads inputs: local paths, or URIs through pyarrow's filesystems.

A URI (``s3://bucket/scans``, ``gs://...``, ``hdfs://...``, ``file:///data/scans``) is listed and
read with ``pyarrow.fs.FileSystem.from_uri``, with the credentials pyarrow finds on the machine;
a plain path is read as it is. pyarrow is imported only when a URI is given.

Listing a folder leaves out hidden files and folders: a name starting with "." anywhere in the
path under the folder searched (``.git/``, ``.DS_Store``, editors' ``.x.swp``), as ``ls`` and file
browsers do. Local folders are searched through symbolic links; a link back to a folder that
holds it (a loop) is reported, not followed.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

Source = Path | str   # a local path, or a URI string

#: What a listing says of an entry it cannot use, by errno (else the system's own words).
WHY = {errno.ELOOP: "a symbolic link loop", errno.ENOENT: "a broken link"}
LOOP = "a link back to a folder that holds it (a loop): not followed"
NOT_A_FILE = "not a regular file (a device, pipe or socket)"


@dataclass(frozen=True)
class Entry:
    """A file found in a folder: its source, its path relative to the folder, and ``problem``
    ("" when it can be read; else why it cannot: an unreadable folder, a broken link, a loop)."""

    source: Source
    rel: PurePosixPath
    problem: str = ""


def is_uri(source: Source) -> bool:
    return "://" in str(source)


def _resolve(uri: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def is_dir(source: Source) -> bool:
    if not is_uri(source):
        return Path(source).is_dir()
    from pyarrow import fs

    filesystem, path = _resolve(source)
    return filesystem.get_file_info(path).type == fs.FileType.Directory


def _hidden(rel: PurePosixPath) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _real(path: Source) -> Path:
    """The path with every link resolved (never raising, also for a link loop)."""
    return Path(os.path.realpath(path))


def why(err: OSError) -> str:
    """An OSError in plain words ("Permission denied", "a broken link"), never a traceback."""
    return WHY.get(err.errno) or err.strerror or type(err).__name__


def _local_files(folder: Path, recursive: bool) -> list[Entry]:
    entries: list[Entry] = []

    def rel(path: str) -> PurePosixPath:
        return PurePosixPath(Path(path).relative_to(folder).as_posix())

    def unreadable(err: OSError) -> None:
        entries.append(Entry(Path(err.filename), rel(err.filename), why(err)))

    for top, folders, names in os.walk(folder, onerror=unreadable, followlinks=True):
        real = _real(top)
        kept = []
        for name in sorted(folders) if recursive else []:
            path = Path(top, name)
            if name.startswith("."):
                continue
            if _real(path) == real or _real(path) in real.parents:
                entries.append(Entry(path, rel(path), LOOP))
            else:
                kept.append(name)
        folders[:] = kept
        for name in names:
            path = Path(top, name)
            if name.startswith("."):
                continue
            try:
                mode = path.stat().st_mode
            except OSError as err:
                entries.append(Entry(path, rel(path), why(err)))
                continue
            entries.append(Entry(path, rel(path), "" if stat.S_ISREG(mode) else NOT_A_FILE))
    return entries


def files(folder: Source, recursive: bool) -> list[Entry]:
    """Every file in ``folder`` that is not hidden (at its top level, or all levels with
    ``recursive``), sorted by its path relative to the folder; those that cannot be read (and
    folders that cannot be listed, the folder itself included) carry their ``problem``."""
    if not is_uri(folder):
        return sorted(_local_files(Path(folder), recursive), key=lambda e: e.rel)
    from pyarrow import fs

    filesystem, root = _resolve(folder)
    try:
        listing = filesystem.get_file_info(fs.FileSelector(root, recursive=recursive))
    except OSError as err:
        return [Entry(folder, PurePosixPath(), why(err))]
    base = str(folder).rstrip("/")
    found = (PurePosixPath(PurePosixPath(i.path).relative_to(root).as_posix()) for i in listing
             if i.type == fs.FileType.File)
    return sorted((Entry(f"{base}/{rel}", rel) for rel in found if not _hidden(rel)), key=lambda e: e.rel)


def local(source: Source) -> Path | None:
    """The local file a source is (a path, or a ``file://`` URI), resolved; None for remote ones."""
    if not is_uri(source):
        return _real(source)
    from pyarrow import fs

    filesystem, path = _resolve(source)
    return _real(path) if isinstance(filesystem, fs.LocalFileSystem) else None


def fetch(source: Source) -> Path | bytes:
    """What ``imageio.read_input`` reads: a local path as it is, a URI's bytes."""
    if not is_uri(source):
        return Path(source)
    filesystem, path = _resolve(source)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()
