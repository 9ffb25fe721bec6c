"""Where ``lungseg predict`` reads inputs: local paths, or URIs through pyarrow's filesystems.

A URI (``s3://bucket/scans``, ``gs://...``, ``hdfs://...``, ``file:///data/scans``) is listed and
read with ``pyarrow.fs.FileSystem.from_uri``, with the credentials pyarrow finds on the machine;
a plain path is read as it is. pyarrow is imported only when a URI is given.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

Source = Path | str   # a local path, or a URI string


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


def files(folder: Source, recursive: bool) -> list[tuple[Source, PurePosixPath]]:
    """Every file in ``folder`` (all levels with ``recursive``) with its path relative to it."""
    if not is_uri(folder):
        found = Path(folder).rglob("*") if recursive else Path(folder).iterdir()
        return [(p, PurePosixPath(p.relative_to(folder).as_posix())) for p in found if p.is_file()]
    from pyarrow import fs

    filesystem, root = _resolve(folder)
    listing = filesystem.get_file_info(fs.FileSelector(root, recursive=recursive))
    base = str(folder).rstrip("/")
    return [(f"{base}/{rel}", PurePosixPath(rel)) for rel in
            (PurePosixPath(i.path).relative_to(root).as_posix() for i in listing
             if i.type == fs.FileType.File)]


def local(source: Source) -> Path | None:
    """The local file a source is (a path, or a ``file://`` URI), resolved; None for remote ones."""
    if not is_uri(source):
        return Path(source).resolve()
    from pyarrow import fs

    filesystem, path = _resolve(source)
    return Path(path).resolve() if isinstance(filesystem, fs.LocalFileSystem) else None


def fetch(source: Source) -> Path | bytes:
    """What ``imageio.read_input`` reads: a local path as it is, a URI's bytes."""
    if not is_uri(source):
        return Path(source)
    filesystem, path = _resolve(source)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()
