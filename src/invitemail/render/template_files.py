"""Where templates come from: reading a template file without leaving its folder (never
through a link, never a FIFO, a device or a ``/proc`` file, never more than
MAX_TEMPLATE_BYTES), and the loader that reads templates that way (TemplateLoader: a name
with ``..`` or a leading ``/`` is refused).

A template is read by opening each folder on the way with ``O_NOFOLLOW`` relative to the one
before (``openat``), so no link anywhere below the templates folder is followed, and the
file itself is checked to be a regular file before and after it is opened (``O_NONBLOCK``:
a FIFO put in its place cannot make the open wait). A hard link is a regular file and is
read: only a file its owner may link, on the same file system, can be one.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

import jinja2

from invitemail.errors import TemplateError

MAX_TEMPLATE_BYTES = 1024 * 1024  # a template file larger than this is not a template


class BadTemplateName(ValueError):
    """A template name with ``..``, a leading ``/`` or a backslash."""


def template_pieces(template: str) -> list[str]:
    """The folder and file names of ``template`` (``LANG/NAME.PART``); BadTemplateName
    for a name that could leave the folder."""
    pieces = template.split("/")
    if template.startswith("/") or "\\" in template or any(p in ("", ".", "..")
                                                           for p in pieces):
        raise BadTemplateName(f"{template!r}: a template name is a path inside templates/ "
                              "(no '..', no leading '/')")
    return pieces


_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def read_template(folder: str, pieces: list[str]) -> tuple[str, float] | None:
    """The text of ``folder/pieces`` and its mtime; None when there is no such entry;
    TemplateError when the entry is not a regular file inside ``folder`` or too large."""
    try:
        fd = os.open(folder, _NOFOLLOW | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None
    try:
        for i, piece in enumerate(pieces[:-1]):
            try:
                inner = os.open(piece, _NOFOLLOW | getattr(os, "O_DIRECTORY", 0), dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError:  # a link (ELOOP), or a file where a folder should be
                where = os.path.join(folder, *pieces[:i + 1])
                if os.path.islink(where):
                    raise _refuse_link(where, os.path.join(folder, *pieces), "folder") from None
                return None
            os.close(fd)
            fd = inner
        path = os.path.join(folder, *pieces)
        try:
            info = os.stat(pieces[-1], dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(info.st_mode):
            raise _refuse_link(path, path, "file")
        if not stat.S_ISREG(info.st_mode):
            raise TemplateError(f"{path}: is not a regular file but {_kind(info.st_mode)}; "
                                "templates are read only from plain files",
                                hint=f"replace {path} with a text file")
        _check_template_size(path, info.st_size)
        # O_NONBLOCK: should a FIFO take the file's place now, opening it does not hang.
        file_fd = os.open(pieces[-1], _NOFOLLOW | getattr(os, "O_NONBLOCK", 0), dir_fd=fd)
        try:
            opened = os.fstat(file_fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) \
                    or not stat.S_ISREG(opened.st_mode):
                raise TemplateError(f"{path}: changed while it was being read",
                                    hint="run the command again")
            data = b""
            while len(data) <= MAX_TEMPLATE_BYTES:
                block = os.read(file_fd, MAX_TEMPLATE_BYTES + 1 - len(data))
                if not block:
                    break
                data += block
        finally:
            os.close(file_fd)
        _check_template_size(path, len(data))
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8"), info.st_mtime
    except UnicodeDecodeError:
        raise TemplateError(f"{path}: is not UTF-8 text", hint="save it as UTF-8") from None


def _refuse_link(link: str, path: str, kind: str) -> TemplateError:
    try:
        target = f" (to {os.readlink(link)})"
    except OSError:
        target = ""
    where = f"{path}: " + ("is a link" if link == path else f"{link} is a link")
    return TemplateError(
        f"{where}{target}; templates are read only from files inside the templates folder, "
        "never through a link",
        hint=f"replace the link {link} with a copy of the {kind} it points to")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "something else"


def _check_template_size(path: str, size: int) -> None:
    if size > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"{path}: is larger than {MAX_TEMPLATE_BYTES // 1024} KiB; that is "
                            "not an email template", hint="check that it is the right file")


def unchanged(path: str, mtime: float) -> bool:
    """Whether the file at ``path`` still has modification time ``mtime``."""
    try:
        return os.lstat(path).st_mtime == mtime
    except OSError:
        return False


class TemplateLoader(jinja2.BaseLoader):
    """Reads ``LANG/NAME.PART`` from the first of ``folders`` that has it, without following
    a link anywhere below the folder (``open`` with ``O_NOFOLLOW``, one component at a time)."""

    def __init__(self, folders: Iterable[Path]) -> None:
        # As given: error messages and the traceback's file names use these.
        self.folders = [str(folder) for folder in folders]

    def get_source(self, environment: jinja2.Environment,
                   template: str) -> tuple[str, str, Callable[[], bool]]:
        try:
            pieces = template_pieces(template)
        except BadTemplateName as err:
            raise jinja2.TemplateNotFound(template, message=str(err)) from None
        for folder in self.folders:
            found = read_template(folder, pieces)
            if found is not None:
                text, mtime = found
                path = os.path.join(folder, *pieces)
                return text, path, functools.partial(unchanged, path, mtime)
        raise jinja2.TemplateNotFound(template)

    def entry(self, template: str) -> str | None:
        """The path of ``template`` in the first folder that has an entry of that name
        (a file, or whatever else is there, not following a link); None when none has."""
        try:
            pieces = template_pieces(template)
        except BadTemplateName:
            return None
        for folder in self.folders:
            path = os.path.join(folder, *pieces)
            if os.path.lexists(path):
                return path
        return None
