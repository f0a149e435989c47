"""Outputs never follow links: every file the tool writes for the user (the gallery's pages and
index.html, the .eml files, the ``status --report`` file, ``init``'s scaffold) is written
under a fresh temporary name and renamed into place, so a link planted at a name it writes is
replaced (or, for ``init``, refused), never written through; a dangling one never creates its
target. Files that hold meeting data are 0600 and new folders 0700 whatever the umask, and an
output folder that is itself a link is refused.

Everything runs through the CLI on real files; the umask and file-size cases in a child
process (``run_process``), where those settings can be made without touching pytest's own.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from invitemail.campaign import Campaign
from invitemail.inputs.registrants import unique_registrants
from invitemail.journal.store import Journal, Row
from invitemail.outputs.files import OutputError
from invitemail.outputs.gallery import INDEX, GalleryWriter, page_name
from invitemail.outputs.preview import eml_name
from invitemail.outputs.report import write_report
from support.cli import Run, run_cli
from support.event import EventBuilder, write_event
from support.relay import SmtpServer

ADDRESSES = ("soren@example.org", "karen@example.org")  # support.event.ROWS, in their order
PAGES = [page_name(n, a) for n, a in enumerate(ADDRESSES, start=1)]
EMLS = [eml_name(n, a) for n, a in enumerate(ADDRESSES, start=1)]
PRECIOUS = b"someone else's file: it must stay as it is\n"
LINK_HINT = "Hint: give the folder itself (not a link to it), or a new folder\n"


# -- planting links -----------------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """A symbolic link at ``link`` and what it leads to; :meth:`check` says that what it led
    to is as it was (a file unchanged, a folder still empty, nothing created)."""

    link: Path
    target: Path
    content: bytes | None  # None: the target does not exist and must not come to

    def check(self) -> None:
        if self.content is None:
            assert not os.path.lexists(self.target), f"{self.target} was created"
        elif self.target.is_dir():
            assert list(self.target.iterdir()) == [], f"{self.target} was written into"
        else:
            assert self.target.read_bytes() == self.content, f"{self.target} was changed"

    def replaced(self) -> None:
        """The link itself has become a regular file, and the target is untouched."""
        assert not self.link.is_symlink() and self.link.is_file(), self.link
        assert stat.S_IMODE(self.link.stat().st_mode) == 0o600, self.link
        self.check()

    def left_alone(self) -> None:
        """The link is still there, as a link, and the target is untouched."""
        assert self.link.is_symlink(), f"{self.link} was removed"
        self.check()


# The kinds of place a planted link can lead to.
KINDS = ["outside-file", "event-toml", "dangling", "chain"]


def plant(link: Path, kind: str, tmp_path: Path) -> Planted:
    """A link at ``link`` of the given kind, to a target of its own under ``tmp_path``."""
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    own = outside / f"{link.parent.name}-{link.name}"
    link.parent.mkdir(parents=True, exist_ok=True)
    if kind == "outside-file":
        own.write_bytes(PRECIOUS)
        link.symlink_to(own)
        return Planted(link, own, PRECIOUS)
    if kind == "event-toml":  # the event's own settings, the meeting password in them
        target = tmp_path / "event" / "event.toml"
        link.symlink_to(target)
        return Planted(link, target, target.read_bytes())
    if kind == "dangling":
        link.symlink_to(own)
        return Planted(link, own, None)
    if kind == "chain":  # a link to a link to a file
        own.write_bytes(PRECIOUS)
        middle = outside / f"via-{own.name}"
        middle.symlink_to(own)
        link.symlink_to(middle)
        return Planted(link, own, PRECIOUS)
    if kind == "outside-folder":
        own.mkdir()
        link.symlink_to(own, target_is_directory=True)
        return Planted(link, own, b"")
    raise ValueError(kind)


@pytest.fixture
def event(tmp_path: Path) -> Path:
    return write_event(tmp_path / "event")


# -- running ------------------------------------------------------------------------------


def run_process(*args: str | Path, umask: int | None = None,
                file_size: int | None = None) -> Run:
    """``invitemail ARGS`` in a child process, with this umask, or unable to write a file
    larger than ``file_size`` bytes (writes past it fail with EFBIG, as on a full disk)."""

    def setup() -> None:
        if umask is not None:
            os.umask(umask)
        if file_size is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    done = subprocess.run([sys.executable, "-m", "invitemail", *[str(a) for a in args]],
                          capture_output=True, text=True, timeout=120, preexec_fn=setup,
                          env={**os.environ, "INVITEMAIL_WORKERS": "1"})
    return Run(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` cannot be written to while the block runs (for root too: as root, a mode
    stops nothing, so the folder is made immutable instead)."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)],
                                        capture_output=True).returncode:
        why = "running as root, and this file system cannot make a folder immutable"
        if os.environ.get("CI"):  # CI runs as root on a machine that can: a skip hides a gap
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def modes(root: Path) -> dict[str, int]:
    """The permission bits of ``root`` and everything below it, by relative path."""
    found = {".": stat.S_IMODE(root.lstat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def hidden(folder: Path) -> list[str]:
    """Dot files left in ``folder`` (where a temporary file would be)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- preview --out: the gallery and the .eml files ----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_preview_replaces_a_link_at_each_name_it_writes(event: Path, tmp_path: Path,
                                                        kind: str) -> None:
    out = tmp_path / "preview"
    planted = [plant(out / name, kind, tmp_path) for name in [INDEX, *PAGES]]

    run = run_cli("preview", event, "--out", out)

    assert run.exit_code == 0, run.output
    for link in planted:
        link.replaced()
    assert "<title>Persondata i praksis: invitation</title>" in (out / INDEX).read_text()
    assert "soren@example.org" in (out / PAGES[0]).read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX, *PAGES, *EMLS])


@pytest.mark.parametrize("kind", KINDS)
def test_preview_refuses_a_folder_with_a_link_named_like_an_eml_file(
        event: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "preview"
    planted = plant(out / EMLS[1], kind, tmp_path)

    run = run_cli("preview", event, "--out", out)

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {out}: already holds .eml files ({EMLS[1]} ...)\n"
                          "Hint: give an empty or new folder to --out\n")
    planted.left_alone()
    assert [p.name for p in out.iterdir()] == [EMLS[1]]


@pytest.mark.parametrize("kind", ["outside-file", "dangling", "outside-folder"])
def test_preview_leaves_links_at_plausible_temporary_names_alone(
        event: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "preview"
    names = [f".{INDEX}.partial", f".{INDEX}.tmp", f"{INDEX}.tmp", f"{INDEX}~", f".{INDEX}.swp",
             f".{PAGES[0]}.tmp", f"{PAGES[0]}.tmp", f".{EMLS[0]}.tmp", f"{EMLS[0]}.part"]
    planted = [plant(out / name, kind, tmp_path) for name in names]

    run = run_cli("preview", event, "--out", out)

    assert run.exit_code == 0, run.output
    for link in planted:
        link.left_alone()
    assert hidden(out) == sorted(n for n in names if n.startswith("."))  # no other dot file
    assert (out / INDEX).is_file() and not (out / INDEX).is_symlink()


@pytest.mark.parametrize("kind", ["outside-folder", "dangling", "chain"])
def test_preview_refuses_an_output_folder_that_is_a_link(event: Path, tmp_path: Path,
                                                         kind: str) -> None:
    out = tmp_path / "preview"
    planted = plant(out, kind if kind != "chain" else "outside-folder", tmp_path)
    if kind == "chain":  # a link to a link to a folder
        out.unlink()
        middle = tmp_path / "outside" / "middle"
        middle.symlink_to(planted.target, target_is_directory=True)
        out.symlink_to(middle, target_is_directory=True)
    target = os.readlink(out)

    run = run_cli("preview", event, "--out", out)

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {out}: is a symbolic link (to {target}); invitemail does "
                          f"not write through links\n{LINK_HINT}")
    planted.left_alone()


def test_preview_refuses_a_dangling_link_on_the_way_to_a_new_output_folder(
        event: Path, tmp_path: Path) -> None:
    planted = plant(tmp_path / "previews", "dangling", tmp_path)
    out = tmp_path / "previews" / "today"

    run = run_cli("preview", event, "--out", out)

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {planted.link}: is a symbolic link (to {planted.target}); "
                          f"invitemail does not write through links\n{LINK_HINT}")
    planted.left_alone()


def test_preview_enters_an_existing_link_above_the_output_folder(event: Path,
                                                                 tmp_path: Path) -> None:
    # A link further up (a home folder that is one, say) was there before the tool: only the
    # output folder itself, and folders the tool creates, must not be links.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)

    run = run_cli("preview", event, "--out", tmp_path / "alias" / "new" / "preview")

    assert run.exit_code == 0, run.output
    assert (real / "new" / "preview" / INDEX).is_file()
    assert modes(real / "new")["."] == 0o700


def test_preview_keeps_writing_into_the_folder_it_opened_when_the_path_becomes_a_link(
        event: Path, tmp_path: Path) -> None:
    campaign = Campaign.open(event)
    out = tmp_path / "preview"
    planted = plant(tmp_path / "elsewhere", "outside-folder", tmp_path)
    with GalleryWriter(out) as writer:
        # Swapped half way: the folder moved away and a link to another put in its place.
        out.rename(tmp_path / "moved")
        out.symlink_to(planted.target, target_is_directory=True)
        for built in campaign.messages(unique_registrants(campaign.source)):
            writer(built)

    planted.check()
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == sorted(
        [INDEX, *PAGES, *EMLS])


def test_preview_files_are_0600_and_new_folders_0700_under_umask_000(
        event: Path, tmp_path: Path) -> None:
    run = run_process("preview", event, "--out", tmp_path / "a" / "b" / "preview", umask=0)

    assert run.exit_code == 0, run.output
    found = modes(tmp_path / "a")
    assert found == {".": 0o700, "b": 0o700, "b/preview": 0o700,
                     **{f"b/preview/{name}": 0o600 for name in [INDEX, *PAGES, *EMLS]}}


def test_preview_keeps_an_existing_folders_mode_and_writes_its_files_0600(
        event: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    out.mkdir(mode=0o755)
    out.chmod(0o755)

    run = run_process("preview", event, "--out", out, umask=0)

    assert run.exit_code == 0, run.output
    assert modes(out) == {".": 0o755, **{name: 0o600 for name in [INDEX, *PAGES, *EMLS]}}


def test_preview_into_a_read_only_folder_says_so(event: Path, tmp_path: Path) -> None:
    out = tmp_path / "preview"
    out.mkdir()
    with read_only(out):
        run = run_cli("preview", event, "--out", out)
        inside = run_cli("preview", event, "--out", out / "new")

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"Error: {out / INDEX}: cannot write: ")
    assert run.stderr.endswith("\nHint: choose a folder you can write to, or change its "
                               "permissions\n")
    assert (inside.exit_code, inside.stdout) == (1, "")
    assert inside.stderr.startswith(f"Error: {out / 'new'}: cannot create the folder: ")
    assert inside.stderr.endswith("\nHint: choose a folder you can write to, or change its "
                                  "permissions\n")
    assert "Traceback" not in run.output + inside.output
    assert list(out.iterdir()) == []


def test_preview_that_cannot_finish_a_file_leaves_no_temporary_file(event: Path,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "preview"
    # Each message is ~20 kB: the first .eml file already cannot be written whole.
    run = run_process("preview", event, "--out", out, file_size=8 * 1024)

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {out / EMLS[0]}: cannot write: File too large\n"
                          "Hint: the file is larger than this system lets you write: raise "
                          "the file size limit (ulimit -f), or choose a folder on another "
                          "disk\n")
    assert list(out.iterdir()) == []  # no index.html, no half file, no temporary file


# -- status --report ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event whose two registrants were sent the invitation (a journal to report on)."""
    folder = tmp_path_factory.mktemp("sent") / "event"
    with SmtpServer() as server:
        EventBuilder().relay({"host": "127.0.0.1", "port": server.port,
                              "security": "none"}).write(folder)
        run = run_cli("send", folder, "--yes")
    assert run.exit_code == 0, run.output
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_status_report_replaces_a_link_at_its_name(sent: Path, tmp_path: Path,
                                                   kind: str) -> None:
    (tmp_path / "event").mkdir()
    EventBuilder().toml.save(tmp_path / "event" / "event.toml")  # what "event-toml" aims at
    report = tmp_path / "reports" / "report.csv"
    planted = plant(report, kind, tmp_path)

    run = run_cli("status", sent, "--report", report)

    assert run.exit_code == 0, run.output
    assert run.stdout.endswith(f"wrote 2 rows to {report}\n")
    planted.replaced()
    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["soren@example.org", "2", "sent"], ["karen@example.org", "3", "sent"]]
    assert hidden(report.parent) == []


def test_status_report_refuses_a_link_to_a_folder(sent: Path, tmp_path: Path) -> None:
    planted = plant(tmp_path / "report.csv", "outside-folder", tmp_path)

    run = run_cli("status", sent, "--report", planted.link)

    assert run.exit_code == 2 and "is a directory" in run.stderr, run.output
    planted.left_alone()


@pytest.mark.parametrize("kind", ["outside-file", "dangling", "outside-folder"])
def test_status_report_leaves_links_at_plausible_temporary_names_alone(
        sent: Path, tmp_path: Path, kind: str) -> None:
    report = tmp_path / "reports" / "report.csv"
    names = [".report.csv.tmp", "report.csv.tmp", ".report.csv.partial", "report.csv~",
             ".~lock.report.csv#"]
    planted = [plant(report.parent / name, kind, tmp_path) for name in names]

    run = run_cli("status", sent, "--report", report)

    assert run.exit_code == 0, run.output
    for link in planted:
        link.left_alone()
    assert report.is_file() and not report.is_symlink()
    assert hidden(report.parent) == sorted(n for n in names if n.startswith("."))


def test_status_report_enters_a_folder_the_user_named_through_a_link(sent: Path,
                                                                     tmp_path: Path) -> None:
    # The report's folder is the user's, named by them: a link to it is followed. Only the
    # report's own name is never written through.
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)

    run = run_cli("status", sent, "--report", tmp_path / "alias" / "report.csv")

    assert run.exit_code == 0, run.output
    assert [p.name for p in real.iterdir()] == ["report.csv"]


def test_status_report_that_fails_half_way_leaves_the_old_one(sent: Path,
                                                               tmp_path: Path) -> None:
    # The disk fills after the first row (csv.writer's write raises as the rows come).
    report = tmp_path / "report.csv"
    report.write_text("last week's report\n")

    def rows_until_the_disk_is_full() -> Iterator[Row]:
        journal = Journal.open(sent, create=False)
        assert journal is not None
        with journal:
            yield next(iter(journal.rows("invitation")))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError) as raised:
        write_report(report, rows_until_the_disk_is_full())

    assert str(raised.value) == f"{report}: cannot write: No space left on device"
    assert raised.value.hint == ("free some space on that disk, or choose a folder on another "
                                 "disk; then run the same command again")
    assert report.read_text() == "last week's report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]


def test_status_report_is_0600_under_umask_000_even_over_a_0644_file(sent: Path,
                                                                       tmp_path: Path) -> None:
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    old.write_text("an older report\n")
    old.chmod(0o644)

    for report in (new, old):
        run = run_process("status", sent, "--report", report, umask=0)
        assert run.exit_code == 0, run.output
        assert report.read_text(encoding="utf-8-sig").startswith("email,line,state,")

    assert modes(tmp_path) == {".": modes(tmp_path)["."], "new.csv": 0o600, "old.csv": 0o600}


def test_status_report_into_a_read_only_or_missing_folder_says_so(sent: Path,
                                                                  tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    with read_only(folder):
        run = run_cli("status", sent, "--report", folder / "report.csv")
    missing = run_cli("status", sent, "--report", tmp_path / "nowhere" / "report.csv")

    assert run.exit_code == 1
    assert f"Error: {folder / 'report.csv'}: cannot write: " in run.stderr
    assert run.stderr.endswith("\nHint: choose a folder you can write to, or change its "
                               "permissions\n")
    assert list(folder.iterdir()) == []
    assert missing.exit_code == 1
    assert missing.stderr == (f"Error: {tmp_path / 'nowhere'}: cannot open the folder: No such "
                              "file or directory\nHint: create the folder first, or choose one "
                              "that exists\n")
    assert "Traceback" not in run.output + missing.output


# -- init ---------------------------------------------------------------------------------

TEMPLATE = Path("templates") / "da" / "invitation.html"


@pytest.mark.parametrize("name", ["event.toml", "registrants.csv", str(TEMPLATE)])
@pytest.mark.parametrize("kind", [*KINDS, "outside-folder"])
def test_init_refuses_a_link_at_any_name_it_would_write(event: Path, tmp_path: Path,
                                                        kind: str, name: str) -> None:
    folder = tmp_path / "new"
    planted = plant(folder / name, kind, tmp_path)

    run = run_cli("init", folder, "--templates")

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {folder / name}: already exists; init never overwrites\n"
                          "Hint: choose a new folder, or move the existing files away\n")
    planted.left_alone()
    written = [p for p in folder.rglob("*") if p.is_file() or p.is_symlink()]
    assert written == [planted.link]  # nothing else was written either


@pytest.mark.parametrize("where", [".", "templates", "templates/da"])
@pytest.mark.parametrize("kind", ["outside-folder", "dangling"])
def test_init_refuses_a_folder_that_is_a_link(tmp_path: Path, where: str, kind: str) -> None:
    folder = tmp_path / "new"
    planted = plant(folder / where if where != "." else folder, kind, tmp_path)
    shown = folder / where if where != "." else folder

    run = run_cli("init", folder, "--templates")

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr == (f"Error: {shown}: is a symbolic link (to {planted.target}); "
                          f"invitemail does not write through links\n{LINK_HINT}")
    planted.left_alone()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name.endswith(
        (".toml", ".csv", ".html", ".txt"))]


def test_init_modes_under_umask_000(tmp_path: Path) -> None:
    run = run_process("init", tmp_path / "a" / "new", "--templates", umask=0)

    assert run.exit_code == 0, run.output
    found = modes(tmp_path / "a")
    # The event's settings (the meeting password) and the registrants: 0600; folders: 0700;
    # the copied templates hold neither: 0644 (a stricter umask would narrow them).
    assert {found["."], found["new"], found["new/templates"], found["new/templates/da"]} == {
        0o700}
    assert found["new/event.toml"] == found["new/registrants.csv"] == 0o600
    templates = {mode for path, mode in found.items() if path.startswith("new/templates/")
                 and (tmp_path / "a" / path).is_file()}
    assert templates == {0o644}
    assert hidden(tmp_path / "a" / "new") == []


def test_init_copies_templates_at_most_0644_under_a_strict_umask(tmp_path: Path) -> None:
    run = run_process("init", tmp_path / "new", "--templates", umask=0o077)

    assert run.exit_code == 0, run.output
    found = modes(tmp_path / "new")
    assert found["event.toml"] == 0o600
    assert found[str(TEMPLATE)] == 0o600  # the umask narrows 0644; nothing widens it


def test_init_into_a_read_only_folder_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    with read_only(folder):
        run = run_cli("init", folder)

    assert (run.exit_code, run.stdout) == (1, "")
    assert run.stderr.startswith(f"Error: {folder / 'event.toml'}: cannot write: ")
    assert run.stderr.endswith("\nHint: choose a folder you can write to, or change its "
                               "permissions\n")
    assert list(folder.iterdir()) == []
