"""Every file the tool writes for the user (gallery, .eml files, report, scaffold), written
without ever following a symbolic link. The send journal (``.invitemail/``) is journal/store.py's.

The guarantees:

- A file is first written under an unpredictable temporary name in its own folder, opened
  with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (so nothing that already sits at that name, a link
  included, is opened), then renamed onto its final name with :func:`os.replace`. A rename
  swaps the folder's entry: a symlink at the final name is replaced by the new file, never
  followed, and a dangling one never creates its target. ``init`` (which never overwrites)
  links the file in instead, which fails when anything, a dangling link too, has the name.
- A file that holds meeting data (the password, the join link, registrants) is 0600 whatever
  the umask (``fchmod`` after opening); the others (the copied templates) are at most 0644.
- Folders the tool creates are 0700. The output folder itself, and every folder the tool
  creates or enters below it, must not be a symbolic link: it is refused, with the link's
  target in the message. (A link further up the path, such as a home folder that is one,
  was there before the tool and is followed.)
- The output folder is held open while files are written into it, and every file is created
  relative to that open folder, so a folder swapped for a link half way changes nothing.
- A failure (permission denied, disk full) removes the temporary file and raises an
  :class:`OutputError` that names the path and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from invitemail.errors import InvitemailError

PRIVATE_MODE = 0o600  # files that hold meeting data: exactly this, whatever the umask
SHARED_MODE = 0o644  # the others: at most this (a stricter umask narrows it)
FOLDER_MODE = 0o700  # folders the tool creates

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
_TEMPORARY_TRIES = 8  # another file at a fresh random name is already unlikely once

_HINTS = {
    errno.EACCES: "choose a folder you can write to, or change its permissions",
    errno.EPERM: "choose a folder you can write to, or change its permissions",
    errno.EROFS: "the disk is read-only: choose a folder on another disk",
    errno.ENOSPC: "free some space on that disk, or choose a folder on another disk; "
                  "then run the same command again",
    errno.EDQUOT: "free some space within your disk quota, or choose a folder on another "
                  "disk; then run the same command again",
    errno.EFBIG: "the file is larger than this system lets you write: raise the file size "
                 "limit (ulimit -f), or choose a folder on another disk",
    errno.ENOENT: "create the folder first, or choose one that exists",
}


class OutputError(InvitemailError):
    """A file or folder the tool writes cannot be written, or a link stands in the way."""


class AlreadyExists(OutputError):
    """A file that must not replace anything found something at its name."""


def _failure(path: Path, doing: str, err: OSError) -> OutputError:
    return OutputError(f"{path}: cannot {doing}: {err.strerror or err}",
                       hint=_HINTS.get(err.errno or 0))


def _temporary_name(name: str) -> str:
    # Hidden, beside the final name, and unpredictable: nobody can place a link there in
    # advance (and O_EXCL | O_NOFOLLOW would refuse one anyway). Short enough for any name.
    return f".{name[:64]}.{secrets.token_hex(8)}.tmp"


class OutputFolder:
    """A folder held open for writing files into it by name; use :meth:`create` (an output
    folder, made when missing) or :meth:`of_file` (the existing folder of a file the user
    named), and close it (or use it as a context manager)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path) -> OutputFolder:
        """Open the output folder ``path``, creating it and its missing parents (0700).

        Refused: ``path`` itself, or a folder the tool creates on the way, being a symbolic
        link (to a folder or dangling). Existing folders above ``path`` are the user's and are
        entered as they are, links or not; existing folders keep their mode.
        """
        parts = path.parts[1:] if path.anchor else path.parts
        where = Path(path.anchor)  # "/", or "" (the current folder) for a relative path
        try:
            fd = os.open(where, _DIRECTORY)
        except OSError as err:
            raise _failure(where, "open the folder", err) from None
        _, fd = _descend(fd, where, parts, follow_above=True)
        return cls(path, fd)

    @classmethod
    def of_file(cls, path: Path) -> OutputFolder:
        """Open the existing folder that is to hold the file ``path`` (a link to a folder is
        followed here: the user named it; the file itself is still never followed)."""
        folder = path.parent
        try:
            return cls(folder, os.open(folder, _DIRECTORY))
        except OSError as err:
            if err.errno == errno.ENOTDIR:
                raise OutputError(f"{folder}: is not a folder",
                                  hint="give a file name in an existing folder") from None
            raise _failure(folder, "open the folder", err) from None

    def folder(self, relative: Path) -> OutputFolder:
        """The folder ``relative`` below this one, created (0700) where missing; none of its
        parts may be a symbolic link."""
        where, fd = _descend(os.dup(self.fd), self.path, relative.parts, follow_above=False)
        return OutputFolder(where, fd)

    # -- reading ------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: the folder is closed")
        return self._fd

    def names(self) -> list[str]:
        """The names in the folder, sorted."""
        return sorted(os.listdir(self.fd))

    # -- writing ------------------------------------------------------------------------

    def stream(self, name: str, *, private: bool = True, encoding: str | None = "utf-8",
               newline: str | None = None, durable: bool = True) -> PendingFile:
        """A file written little by little under a temporary name; see :class:`PendingFile`.
        ``encoding=None`` gives a binary file."""
        return PendingFile(self, name, private=private, encoding=encoding, newline=newline,
                           durable=durable)

    def write(self, name: str, data: bytes | str, *, private: bool = True,
              durable: bool = True, replace: bool = True) -> Path:
        """Write a whole file; returns its path. ``durable=False`` skips the fsync (for the
        many files of a gallery, which a rerun writes again); ``replace=False`` refuses to
        take the place of anything at ``name`` (a dangling link too)."""
        binary = isinstance(data, bytes)
        with self.stream(name, private=private, encoding=None if binary else "utf-8",
                         newline=None if binary else "\n", durable=durable) as pending:
            pending.write(data)
            return pending.commit(replace=replace)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PendingFile:
    """A file being written under a temporary name in its folder: :meth:`commit` puts it in
    place, :meth:`discard` (or any error) removes it, so a half-written file never has the
    final name. As a context manager it commits at the end of the block, discards when the
    block fails, and turns an ``OSError`` into an :class:`OutputError`."""

    def __init__(self, folder: OutputFolder, name: str, *, private: bool,
                 encoding: str | None, newline: str | None, durable: bool) -> None:
        self.folder = folder
        self.name = name
        self.path = folder.path / name
        self.durable = durable
        self._done = False
        self.temporary, fd = self._create(private)
        try:
            self.file: IO[Any] = os.fdopen(fd, "w" if encoding else "wb", encoding=encoding,
                                           newline=newline)
        except BaseException:
            os.close(fd)
            self._remove()
            raise

    def _create(self, private: bool) -> tuple[str, int]:
        for _ in range(_TEMPORARY_TRIES):
            temporary = _temporary_name(self.name)
            try:
                fd = os.open(temporary, _NEW_FILE, PRIVATE_MODE if private else SHARED_MODE,
                             dir_fd=self.folder.fd)
            except FileExistsError:
                continue
            except OSError as err:
                raise _failure(self.path, "write", err) from None
            if private:
                try:
                    os.fchmod(fd, PRIVATE_MODE)  # open's mode went through the umask
                except OSError as err:
                    os.close(fd)
                    with contextlib.suppress(OSError):
                        os.unlink(temporary, dir_fd=self.folder.fd)
                    raise _failure(self.path, "write", err) from None
            return temporary, fd
        raise OutputError(f"{self.path}: cannot write: the folder keeps files at every "
                          "temporary name tried", hint="choose a folder only you can write to")

    def write(self, data: str | bytes) -> None:
        """Write ``data``; on failure the temporary file is removed and an
        :class:`OutputError` raised."""
        try:
            self.file.write(data)
        except OSError as err:
            self.discard()
            raise _failure(self.path, "write", err) from None

    def commit(self, *, replace: bool = True) -> Path:
        """Flush, sync (when durable) and give the file its final name; returns its path.
        ``replace=False``: refuse when anything has the name already (``init``)."""
        if self._done:
            raise ValueError(f"{self.path}: already committed or discarded")
        fd = self.folder.fd
        try:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
            self.file.close()
            if replace:
                # rename(2) swaps the folder's entry and never follows a link at the final
                # name: the link itself is replaced by this file, and its target untouched.
                os.replace(self.temporary, self.name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                # A hard link fails when the name exists in any form, a dangling link too.
                os.link(self.temporary, self.name, src_dir_fd=fd, dst_dir_fd=fd)
                os.unlink(self.temporary, dir_fd=fd)
        except FileExistsError:
            self.discard()
            raise AlreadyExists(f"{self.path}: already exists; it is never overwritten",
                                hint="move it away, or choose a new folder") from None
        except IsADirectoryError:
            self.discard()
            raise OutputError(f"{self.path}: is a folder",
                              hint="give the name of a file to write") from None
        except OSError as err:
            self.discard()
            raise _failure(self.path, "write", err) from None
        self._done = True
        if self.durable:
            # The rename itself; some file systems cannot sync a folder (the file is synced).
            with contextlib.suppress(OSError):
                os.fsync(fd)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (nothing happens to the final name)."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):  # the data is thrown away: a failed flush is moot
            self.file.close()
        self._remove()

    def _remove(self) -> None:
        # Gone already (nothing to clean), or the folder was closed before its files (a
        # caller's mistake, and the file stays).
        with contextlib.suppress(OSError, ValueError):
            os.unlink(self.temporary, dir_fd=self.folder.fd)

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            if not self._done:
                self.commit()
            return
        self.discard()
        if isinstance(error, OSError):
            raise _failure(self.path, "write", error) from None


# -- folders ------------------------------------------------------------------------------


def _descend(fd: int, where: Path, parts: Sequence[str], *,
             follow_above: bool) -> tuple[Path, int]:
    """Enter ``parts`` one below the other from the open folder ``fd`` at ``where``, creating
    what is missing; give the deepest folder's path and descriptor. ``fd`` is taken over:
    closed on the way, or returned. ``follow_above``: a link among the parts above the last
    is followed (folders the user has); the last part is never entered through a link."""
    try:
        for index, part in enumerate(parts):
            where = where / part
            follow = follow_above and index < len(parts) - 1
            inner = _enter(fd, part, where, follow=follow)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return where, fd


def _enter(parent: int, name: str, where: Path, *, follow: bool) -> int:
    """Open the folder ``name`` in ``parent``, creating it (0700) when missing. ``follow``:
    an existing link there is followed (a folder above the output folder, the user's);
    otherwise it is refused, as is a folder created here and swapped for a link since."""
    flags = _DIRECTORY if follow else _DIRECTORY | _NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        pass  # missing (or a dangling link, which mkdir below finds)
    except OSError as err:
        raise _refusal(parent, name, where, err) from None
    try:
        os.mkdir(name, FOLDER_MODE, dir_fd=parent)
    except FileExistsError:
        pass  # a dangling link, or made meanwhile: the open below decides
    except OSError as err:
        raise _failure(where, "create the folder", err) from None
    try:
        fd = os.open(name, _DIRECTORY | _NOFOLLOW, dir_fd=parent)
    except OSError as err:
        raise _refusal(parent, name, where, err) from None
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FOLDER_MODE:
            os.fchmod(fd, FOLDER_MODE)  # mkdir's mode went through the umask
    except OSError as err:
        os.close(fd)
        raise _failure(where, "create the folder", err) from None
    return fd


def _refusal(parent: int, name: str, where: Path, err: OSError) -> OutputError:
    """Why ``name`` in ``parent`` cannot be opened as a folder, as the user should hear it."""
    try:
        mode = os.lstat(name, dir_fd=parent).st_mode
    except OSError:
        return _failure(where, "open the folder", err)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=parent)
        except OSError:
            target = "?"
        return _link_error(where, target)
    if not stat.S_ISDIR(mode):
        return OutputError(f"{where}: exists and is not a folder",
                           hint="choose a new folder, or move that file away")
    return _failure(where, "open the folder", err)


def _link_error(where: Path, target: str) -> OutputError:
    return OutputError(
        f"{where}: is a symbolic link (to {target}); invitemail does not write through links",
        hint="give the folder itself (not a link to it), or a new folder")


def refuse_linked_folders(folders: list[Path]) -> None:
    """Refuse, before anything is written, when one of ``folders`` is a symbolic link (the
    writes check again, race-free, as they open each folder)."""
    for folder in folders:
        if folder.is_symlink():
            raise _link_error(folder, os.readlink(folder))
