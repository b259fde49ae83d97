"""Atomic, permission-respecting output files and folders: every output the suite writes goes through here.

Videos, converted transformers, VAEs, LoRAs, training checkpoints and dataset caches are all written
with these helpers, so that each of them either appears complete or not at all::

    from hyvideo_core.atomic_files import atomic_output, atomic_stream, atomic_folder, atomic_write_text

    atomic_write_text(path, text)                      # small files (atomic_write_bytes, atomic_copy)
    with atomic_output(path) as out:                    # a writer that wants a file name
        save_file(tensors, out.path)                    #   out.path: a hidden ".partial-*" file beside path
    with atomic_stream(path) as out:                    # a writer that writes a file object or a child
        with out.open("wb") as f: f.write(...)          #   process: no name at all until complete (Linux)
        subprocess.run([..., out.child_path], pass_fds=out.pass_fds)      # e.g. ffmpeg
    with atomic_folder(folder) as tmp:                  # a folder of files, published by one rename
        (tmp / "a.json").write_text("...")

Guarantees, for every helper:

* **All or nothing.** The data goes to a temporary file in the target's own folder (same file system,
  so the final rename is atomic), is fsynced, and is renamed over the target with ``os.replace``;
  then the folder itself is fsynced so the rename survives a power cut. A reader sees the old file or
  the complete new one, never a prefix.
* **Nothing left behind.** On any exception in the ``with`` body (including ``KeyboardInterrupt``)
  the temporary data is removed and the target is untouched. ``atomic_stream`` (and the three small
  helpers) go further on Linux: the temporary file is an unnamed ``O_TMPFILE`` inode that only gets
  a name once complete, so even a ``SIGKILL`` or a power cut leaves no partial file. Elsewhere, and
  for ``atomic_output``, it is a hidden ``.partial-*`` file next to the target, which only a hard
  kill can leave behind. (``atomic_output`` exists because some writers, e.g. safetensors >= 0.7,
  create their own temporary file beside the name they are given, which an unnamed file has not.)
* **Normal permissions.** Files are created with mode ``0o666`` and folders ``0o777``, filtered by
  the process umask (and default ACLs) exactly like a plain ``open(path, "w")``, never ``0600`` as
  ``tempfile.mkstemp`` would make them.
* **Clear errors.** A full disk, a quota, a file-size limit or a read-only or forbidden folder raises
  :class:`~hyvideo_core.errors.OutputWriteError` (an ``OSError``) naming the target and what to do.

``atomic_folder`` builds ``<folder>.tmp-<random>`` and renames it to ``<folder>``; POSIX cannot
replace a non-empty folder atomically, so the target must not exist yet (pick a fresh name and
switch a pointer file, as the training checkpoints do). A folder interrupted by ``SIGKILL`` stays
behind as ``<folder>.tmp-*``; :func:`remove_unfinished` sweeps those on the next run.
"""
from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

from .errors import OutputWriteError

PathLike = Union[str, os.PathLike]

PARTIAL_PREFIX = ".partial-"
FOLDER_TMP_INFIX = ".tmp-"
_FILE_MODE = 0o666     # the kernel applies the umask, as for open(path, "w")
_FOLDER_MODE = 0o777
# errors that mean "this output cannot be written here"; EACCES/EPERM only while creating the temporary
# file or folder (inside the body they may be about a file the writer reads)
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000


def _no_inherit() -> int:
    return getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def fsync_folder(folder: PathLike) -> None:
    """Make a rename or creation inside ``folder`` durable (a no-op where folders cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        fd = os.open(os.fspath(folder), os.O_RDONLY | os.O_DIRECTORY | _no_inherit())
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:     # some file systems (and FUSE mounts) refuse fsync on folders; the data is still synced
        pass
    finally:
        os.close(fd)


def _explain(exc: OSError, target: str) -> OutputWriteError:
    advice = {errno.ENOSPC: "free disk space or choose another output folder",
              errno.EDQUOT: "free space in your quota or choose another output folder",
              errno.EFBIG: "the file exceeds the size limit of this process or file system; choose another folder",
              errno.EROFS: "the folder is on a read-only file system; choose a writable output folder",
              errno.EACCES: "you may not write to this folder; fix its permissions or choose another",
              errno.EPERM: "you may not write to this folder; fix its permissions or choose another"}
    what = exc.strerror or str(exc)
    return OutputWriteError(exc.errno, f"could not write {target!r}: {what}; "
                                       f"{advice.get(exc.errno, 'check the output folder')}")


# -- publishing an unnamed (O_TMPFILE) file --------------------------------------------------------------------
# linkat(fd, "", AT_EMPTY_PATH) works for root and on recent kernels for everyone; the /proc/self/fd
# form works on most others. Which one a file system accepts is probed once per device.
_LINK_METHOD: Dict[int, Optional[str]] = {}


def _link_anonymous(fd: int, dest: str, method: str) -> None:
    if method == "empty_path":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(dest), _AT_EMPTY_PATH) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), dest)
    else:
        os.link(f"/proc/self/fd/{fd}", dest, follow_symlinks=True)


def _anonymous_file(folder: str) -> Tuple[Optional[int], Optional[str]]:
    """An unnamed file in ``folder`` and how to name it later, or (None, None) where not supported."""
    if not hasattr(os, "O_TMPFILE") or not sys.platform.startswith("linux"):
        return None, None
    try:
        device = os.stat(folder).st_dev
        fd = os.open(folder, os.O_TMPFILE | os.O_RDWR | _no_inherit(), _FILE_MODE)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None, None
        raise
    if device not in _LINK_METHOD:
        found, transient = None, False
        for method in ("proc", "empty_path"):
            probe = os.open(folder, os.O_TMPFILE | os.O_RDWR | _no_inherit(), _FILE_MODE)
            name = os.path.join(folder, f"{PARTIAL_PREFIX}probe-{secrets.token_hex(6)}")
            try:
                _link_anonymous(probe, name, method)
                os.remove(name)
                found = method
                break
            except (OSError, AttributeError) as exc:
                transient = transient or getattr(exc, "errno", None) in _NO_ROOM   # a full disk says nothing
                continue
            finally:
                os.close(probe)
        if found is None and transient:
            os.close(fd)
            return None, None
        _LINK_METHOD[device] = found
    if _LINK_METHOD[device] is None:
        os.close(fd)
        return None, None
    return fd, _LINK_METHOD[device]


class AtomicOutput:
    """The temporary file behind :func:`atomic_output` and :func:`atomic_stream`.

    ``path``: a name this process can open and write in place (for an unnamed file ``/proc/self/fd/N``);
    ``open(mode)``: a file object on it; ``child_path`` + ``pass_fds``: the same for a subprocess
    started with ``pass_fds=out.pass_fds``.
    """

    def __init__(self, target: PathLike, suffix: str = "", unnamed: bool = False):
        self.target = os.path.abspath(os.fspath(target))
        self.folder = os.path.dirname(self.target)
        self.suffix = suffix or os.path.splitext(self.target)[1]
        self._named: Optional[str] = None
        os.makedirs(self.folder, exist_ok=True)
        self._fd, self._link_method = _anonymous_file(self.folder) if unnamed else (None, None)
        if self._fd is None:
            self._named = os.path.join(self.folder, f"{PARTIAL_PREFIX}{secrets.token_hex(6)}{self.suffix}")
            self._fd = os.open(self._named, os.O_CREAT | os.O_EXCL | os.O_RDWR | _no_inherit(), _FILE_MODE)
        self._mode = os.fstat(self._fd).st_mode & 0o7777     # what the umask made of 0o666

    @property
    def path(self) -> str:
        return self._named or f"/proc/self/fd/{self._fd}"

    @property
    def child_path(self) -> str:
        return self.path

    @property
    def pass_fds(self) -> Tuple[int, ...]:
        return () if self._named else (self._fd,)

    def open(self, mode: str = "wb", **kwargs):
        return open(self.path, mode, **kwargs)

    def commit(self) -> None:
        if self._named is not None:
            self._adopt_replaced_file()
        os.fsync(self._fd)
        if self._named is None and self._link_new_target():
            return
        if self._named is None:
            # the target exists: name the data first, then replace (a kill in between leaves a complete
            # hidden copy, never a partial one)
            staged = os.path.join(self.folder, f"{PARTIAL_PREFIX}{secrets.token_hex(6)}{self.suffix}")
            try:
                _link_anonymous(self._fd, staged, self._link_method)
            except OSError as exc:
                if exc.errno in _NO_ROOM:
                    raise
                self._copy_to(staged)    # the probe passed but this link did not: name a copy instead
            self._named = staged
        os.close(self._fd)
        self._fd = None
        os.replace(self._named, self.target)
        self._named = None
        fsync_folder(self.folder)

    def _link_new_target(self) -> bool:
        """Give the unnamed file the target's name directly when that name is free (one atomic step)."""
        if os.path.lexists(self.target):
            return False
        try:
            _link_anonymous(self._fd, self.target, self._link_method)
        except OSError as exc:
            if exc.errno in _NO_ROOM:
                raise
            return False          # appeared meanwhile, or this link failed: take the staged path
        os.close(self._fd)
        self._fd = None
        fsync_folder(self.folder)
        return True

    def _adopt_replaced_file(self) -> None:
        """A writer may have replaced our temporary file by its own (created 0600): give that one our mode."""
        fd = os.open(self._named, os.O_RDONLY | _no_inherit())
        if os.fstat(fd).st_ino == os.fstat(self._fd).st_ino:
            os.close(fd)
            return
        if hasattr(os, "fchmod"):
            os.fchmod(fd, self._mode)
        else:
            os.chmod(self._named, self._mode)
        os.close(self._fd)
        self._fd = fd

    def _copy_to(self, staged: str) -> None:
        out = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY | _no_inherit(), _FILE_MODE)
        try:
            with os.fdopen(os.dup(self._fd), "rb") as src, os.fdopen(out, "wb") as dst:
                src.seek(0)
                shutil.copyfileobj(src, dst, 16 << 20)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            os.remove(staged)
            raise

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._named is not None:
            try:
                os.remove(self._named)
            except FileNotFoundError:
                pass
            self._named = None


@contextmanager
def atomic_output(path: PathLike, suffix: str = "") -> Iterator[AtomicOutput]:
    """Write ``path`` all-or-nothing through a file name: the ``with`` body writes ``out.path``, a
    hidden ``.partial-*<suffix>`` file beside ``path`` (``suffix`` defaults to the target's, for
    writers that pick a format from the name). See the module docstring."""
    with _atomic(path, suffix, unnamed=False) as out:
        yield out


@contextmanager
def atomic_stream(path: PathLike) -> Iterator[AtomicOutput]:
    """Write ``path`` all-or-nothing through ``out.open()`` or a child process (``out.child_path``,
    ``out.pass_fds``); on Linux the data has no name until it is complete. See the module docstring."""
    with _atomic(path, "", unnamed=True) as out:
        yield out


@contextmanager
def _atomic(path: PathLike, suffix: str, unnamed: bool) -> Iterator[AtomicOutput]:
    target = os.fspath(path)
    try:
        out = AtomicOutput(target, suffix, unnamed)
    except OSError as exc:
        raise _explain(exc, target) from exc
    try:
        yield out
        out.commit()
    except OSError as exc:
        out.discard()
        if exc.errno in _NO_ROOM and not isinstance(exc, OutputWriteError):
            raise _explain(exc, target) from exc
        raise
    except BaseException:
        out.discard()
        raise


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_stream(path) as out, out.open("wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: PathLike, path: PathLike) -> None:
    """Copy the file ``source`` to ``path`` all-or-nothing."""
    with atomic_stream(path) as out, open(source, "rb") as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst, 16 << 20)


def fsync_tree(root: PathLike) -> None:
    """fsync every file and folder under ``root`` (bottom-up), so a rename of ``root`` publishes durable data."""
    for folder, _, files in os.walk(os.fspath(root), topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | _no_inherit())
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_folder(folder)


@contextmanager
def atomic_folder(path: PathLike) -> Iterator[Path]:
    """Build a folder under ``<path>.tmp-<random>`` and publish it as ``path`` with one rename.

    ``path`` must not exist (POSIX cannot atomically replace a non-empty folder); on any exception
    the temporary folder is removed."""
    target = os.path.abspath(os.fspath(path))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, f"{target!r} already exists; atomic_folder only creates new folders "
                                            f"(write under a fresh name and switch a pointer to it)", target)
    parent = os.path.dirname(target)
    tmp = f"{target}{FOLDER_TMP_INFIX}{secrets.token_hex(6)}"
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(tmp, _FOLDER_MODE)
    except OSError as exc:
        raise _explain(exc, target) from exc
    try:
        yield Path(tmp)
        fsync_tree(tmp)
        os.rename(tmp, target)
        fsync_folder(parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM and not isinstance(exc, OutputWriteError):
            raise _explain(exc, target) from exc
        raise


def remove_unfinished(parent: PathLike) -> int:
    """Delete what writers killed by ``SIGKILL`` or a power cut left directly in ``parent``: ``*.tmp-*``
    folders of :func:`atomic_folder` and hidden ``.partial-*`` files. Returns how many.

    Only call this where one process owns ``parent`` (e.g. a training run's checkpoint folder): in a
    shared folder it could remove another process's write in progress."""
    parent = os.fspath(parent)
    if not os.path.isdir(parent):
        return 0
    removed = 0
    for entry in os.scandir(parent):
        if FOLDER_TMP_INFIX in entry.name and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name.startswith(PARTIAL_PREFIX) and entry.is_file(follow_symlinks=False):
            os.remove(entry.path)
        else:
            continue
        removed += 1
    return removed
