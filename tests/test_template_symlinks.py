"""Templates are read only from regular files inside the event's templates/ folder (or the
built-in one): a link, a FIFO, a file too large or a name that climbs out is an error that
names the file, at check, preview and send, and nothing of the target reaches a message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.event import write_event

SECRET = "secret-from-outside-4d1c"  # in a file outside templates/, and in the environment


def _event(folder: Path, text: str = "Kære {{ registrant.name }}") -> Path:
    write_event(folder, [("Ane", "ane@example.org", "da"), ("Bo", "bo@example.org", "da")])
    templates = folder / "templates" / "da"
    templates.mkdir(parents=True)
    (templates / "invitation.subject.txt").write_text("Invitation", encoding="utf-8")
    (templates / "invitation.html").write_text("<p>Invitation</p>", encoding="utf-8")
    (templates / "invitation.txt").write_text(text, encoding="utf-8")
    return folder


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process (a FIFO must not make it hang), with SECRET in its
    environment, so that /proc/self/environ holds it."""
    env = {**os.environ, "INVITEMAIL_TEST_SECRET": SECRET, "INVITEMAIL_SMTP_PASSWORD": SECRET}
    return subprocess.run([sys.executable, "-m", "invitemail", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def _assert_refused(run: subprocess.CompletedProcess[str], *lines: str) -> None:
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "Traceback" not in output
    assert SECRET not in output and "root:" not in output
    for line in lines:  # (send adds "; nothing was sent" to the hint)
        assert any(shown.startswith(line) for shown in run.stderr.splitlines()), run.stderr


def _link_message(path: Path, target: str, kind: str = "file") -> tuple[str, str]:
    return (f"Error: {path}: is a link (to {target}); templates are read only from files "
            "inside the templates folder, never through a link",
            f"Hint: replace the link {path} with a copy of the {kind} it points to")


@pytest.mark.parametrize("target", ["/etc/passwd", "/proc/self/environ", "outside.txt",
                                    "invitation-copy.txt", "missing.txt"])
def test_a_template_that_is_a_link_is_refused(tmp_path: Path, target: str) -> None:
    """Anywhere: a system file, /proc, a file of the user's outside the event, another
    template of the same folder (simplest and safest: no link at all), a dangling link."""
    folder = _event(tmp_path / "event")
    (tmp_path / "event" / "outside.txt").write_text(SECRET, encoding="utf-8")
    templates = folder / "templates" / "da"
    (templates / "invitation-copy.txt").write_text(SECRET, encoding="utf-8")
    link = templates / "invitation.txt"
    link.unlink()
    if target == "outside.txt":
        target = str(folder / "outside.txt")
    link.symlink_to(target)
    _assert_refused(_run("check", folder), *_link_message(link, target))


@pytest.mark.parametrize("command", [["check"], ["preview"], ["send", "--dry-run"],
                                     ["send", "--yes"]])
def test_a_partial_that_is_a_link_is_refused_by_every_command(tmp_path: Path,
                                                              command: list[str]) -> None:
    folder = _event(tmp_path / "event", "{% include 'da/_support.txt' %}")
    (tmp_path / "outside.txt").write_text(SECRET, encoding="utf-8")
    partial = folder / "templates" / "da" / "_support.txt"
    partial.symlink_to(tmp_path / "outside.txt")
    _assert_refused(_run(command[0], folder, *command[1:]),
                    *_link_message(partial, str(tmp_path / "outside.txt")))


def test_a_gallery_never_holds_what_a_link_points_to(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event", "{% include 'da/_support.txt' %}")
    (tmp_path / "outside.txt").write_text(SECRET, encoding="utf-8")
    partial = folder / "templates" / "da" / "_support.txt"
    partial.symlink_to(tmp_path / "outside.txt")
    run = _run("preview", folder, "--out", tmp_path / "gallery")
    assert _link_message(partial, str(tmp_path / "outside.txt"))[0] in run.stderr.splitlines()
    assert "wrote 0 messages" in run.stdout
    assert run.returncode == 1  # the gallery is written, the template still needs fixing
    assert SECRET not in "".join(p.read_text(errors="replace")
                                 for p in (tmp_path / "gallery").rglob("*") if p.is_file())


def test_a_folder_link_inside_templates_is_refused(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event", "{% include 'etc/passwd' %}")
    (folder / "templates" / "etc").symlink_to("/etc")
    where = folder / "templates" / "etc"
    _assert_refused(_run("check", folder),
                    f"Error: {where / 'passwd'}: {where} is a link (to /etc); templates are "
                    "read only from files inside the templates folder, never through a link",
                    f"Hint: replace the link {where} with a copy of the folder it points to")


def test_a_language_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """templates/da -> a folder elsewhere: the built-in name da/invitation.txt is not
    quietly taken from the built-ins either."""
    folder = _event(tmp_path / "event")
    elsewhere = tmp_path / "elsewhere"
    (folder / "templates" / "da").rename(elsewhere)
    (folder / "templates" / "da").symlink_to(elsewhere)
    where = folder / "templates" / "da"
    run = _run("check", folder)
    _assert_refused(run)
    assert f"{where} is a link (to {elsewhere})" in run.stderr


def test_templates_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event")
    (folder / "templates").rename(tmp_path / "shared-templates")
    (folder / "templates").symlink_to(tmp_path / "shared-templates")
    where = folder / "templates"
    _assert_refused(_run("check", folder),
                    f"Error: {where}: is a link (to {tmp_path / 'shared-templates'}); the "
                    "templates are read only from a folder inside the event folder",
                    f"Hint: replace the link {where} with a copy of the folder")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event")
    fifo = folder / "templates" / "da" / "invitation.txt"
    fifo.unlink()
    os.mkfifo(fifo)
    _assert_refused(_run("check", folder),
                    f"Error: {fifo}: is not a regular file but a FIFO; templates are read only "
                    "from plain files", f"Hint: replace {fifo} with a text file")


def test_a_template_too_large_is_refused(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event", "x" * (2 * 1024 * 1024))
    path = folder / "templates" / "da" / "invitation.txt"
    _assert_refused(_run("check", folder),
                    f"Error: {path}: is larger than 1024 KiB; that is not an email template")


@pytest.mark.parametrize("name", ["../../event.toml", "../../../../etc/passwd", "/etc/passwd",
                                  "da/./invitation.html", "da\\\\..\\\\..\\\\event.toml"])
def test_an_include_name_that_climbs_out_is_refused(tmp_path: Path, name: str) -> None:
    folder = _event(tmp_path / "event", f"Hej\n{{% include '{name}' %}}")
    run = _run("check", folder)
    _assert_refused(run)
    shown = name.replace("\\\\", "\\")
    assert (f"Error: {folder}/templates/da/invitation.txt:2: {shown!r}: a template name is a "
            "path inside templates/ (no '..', no leading '/')") in run.stderr
    assert "[smtp]" not in run.stdout + run.stderr


def test_a_hard_link_is_a_regular_file_and_is_read(tmp_path: Path) -> None:
    """A hard link is the file itself, not a pointer to it: it is read (and only a file
    the user may link, on the same file system, can be one)."""
    folder = _event(tmp_path / "event")
    (tmp_path / "mine.txt").write_text("Kære {{ registrant.name }}", encoding="utf-8")
    path = folder / "templates" / "da" / "invitation.txt"
    path.unlink()
    os.link(tmp_path / "mine.txt", path)
    run = _run("check", folder)
    assert run.returncode == 0, run.stderr


def test_ordinary_templates_and_includes_still_work(tmp_path: Path) -> None:
    folder = _event(tmp_path / "event", "{% include 'da/_hello.txt' %} og velkommen")
    (folder / "templates" / "da" / "_hello.txt").write_text("Hej {{ registrant.name }}",
                                                             encoding="utf-8")
    run = _run("preview", folder)
    assert run.returncode == 0, run.stderr
    assert "Hej Ane og velkommen" in run.stdout
