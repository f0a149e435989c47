"""Reading the platforms' attendance reports: the format told from the header, the preamble
and sections skipped, every address as Registrant.key has it, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from invitemail.inputs.attendance import AttendanceError, attendance_from_rows, read_attendance
from support.attendance_reports import TEAMS, TEAMS_OLD, ZOOM_MEETING, ZOOM_WEBINAR, write_report


def people(path: Path) -> dict[str, bool]:
    return {key: person.attended for key, person in read_attendance(path).people.items()}


def test_attendance_zoom_webinar_report_after_its_preamble(tmp_path: Path) -> None:
    path = write_report(tmp_path, "webinar.csv", ZOOM_WEBINAR)
    attendance = read_attendance(path)
    assert attendance.kind == "Zoom webinar attendee report"
    assert people(path) == {"arrangementer@example.org": True, "soren@example.org": True,
                            "ase@example.org": False, "late@example.org": True,
                            "walkin@example.org": True}
    soren = attendance.people["soren@example.org"]
    assert soren.minutes == 54 and soren.where == f"{path}:12"  # two joins, one person
    assert attendance.no_address == [(f"{path}:17", "Phone Caller")]


def test_attendance_no_with_minutes_in_the_session_counts_as_attended(tmp_path: Path) -> None:
    text = ("Attended,User Name (Original Name),Email,Time in Session (minutes)\n"
            "No,A,a@example.org,3\nNo,B,b@example.org,--\nNo,C,c@example.org,0\n"
            "Nej,D,d@example.org,\nYes,E,e@example.org,--\nJa,F,f@example.org,12\n")
    assert people(write_report(tmp_path, "r.csv", text)) == {
        "a@example.org": True, "b@example.org": False, "c@example.org": False,
        "d@example.org": False, "e@example.org": True, "f@example.org": True}


def test_attendance_zoom_meeting_participants_report(tmp_path: Path) -> None:
    path = write_report(tmp_path, "participants.csv", ZOOM_MEETING, encoding="utf-8")
    attendance = read_attendance(path)
    assert attendance.kind == "Zoom meeting participants report"
    # The summary row's "User Email" (the host's) is not a participant.
    assert people(path) == {"karen@example.org": True, "outsider@example.net": True}
    assert attendance.no_address == [(f"{path}:6", "Guest Without Mail")]


def test_attendance_zoom_meeting_report_as_one_table(tmp_path: Path) -> None:
    """The report exported with the meeting's columns on every row: "User Email" twice,
    the host's first; the participant's is the one after the name."""
    text = ("Topic,Meeting ID,User Name,User Email,Duration (Minutes),Name (Original Name),"
            "User Email,Join Time,Leave Time,Duration (Minutes),Guest\n"
            "Webinar,842,Host,host@example.org,65,Karen,karen@example.org,x,y,61,No\n")
    assert people(write_report(tmp_path, "one.csv", text)) == {"karen@example.org": True}


def test_attendance_teams_list_in_utf16_with_tabs(tmp_path: Path) -> None:
    path = write_report(tmp_path, "teams.csv", TEAMS, encoding="utf-16")
    attendance = read_attendance(path)
    assert attendance.kind == "Teams attendance list"
    assert people(path) == {"ase@example.org": True, "arrangementer@example.org": True}
    assert attendance.people["ase@example.org"].name == "Åse Møller"


def test_attendance_report_saved_again_by_a_danish_excel(tmp_path: Path) -> None:
    """cp1252 and semicolons: the delimiter is the one whose rows hold a known header."""
    text = ZOOM_MEETING.replace(",", ";").replace("Karen Blixen", "Kåre Ærø")
    path = write_report(tmp_path, "excel.csv", text, encoding="cp1252")
    attendance = read_attendance(path)
    assert attendance.people["karen@example.org"].name == "Kåre Ærø"


def test_attendance_rows_from_another_source(tmp_path: Path) -> None:
    """The rows a spreadsheet reader gives (position, cells) read the same way."""
    rows = [("r.xlsx: Sheet1!1", ["Attendee Report"]),
            ("r.xlsx: Sheet1!2", ["Attended", "User Email", "Time in Session (minutes)"]),
            ("r.xlsx: Sheet1!3", ["Yes", "A@example.org", "30"]),
            ("r.xlsx: Sheet1!4", ["No", "b@example.org", "--"])]
    attendance = attendance_from_rows(rows, "r.xlsx")
    assert {k: p.attended for k, p in attendance.people.items()} == {
        "a@example.org": True, "b@example.org": False}
    assert attendance.people["a@example.org"].where == "r.xlsx: Sheet1!3"


@pytest.mark.parametrize(("text", "line", "message"), [
    ("Attended,User Name (Original Name),Join Time\nYes,A,x\n", 1,
     "the Zoom webinar attendee report has no email column"),
    ("Name (Original Name),Join Time,Leave Time\nA,x,y\n", 1,
     "the Zoom meeting participants report has no email column"),
    (TEAMS_OLD, 1, "the Teams attendance list (older format) has no email column"),
    ("Intro\n\nName\tFirst Join\tRole\nA\tx\tAttendee\n", 3,
     "the Teams attendance list has no email column"),
])
def test_attendance_report_without_addresses_names_the_header_line(
        tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write_report(tmp_path, "r.csv", text, encoding="utf-16" if "\t" in text
                        else "utf-8")
    with pytest.raises(AttendanceError) as caught:
        read_attendance(path)
    assert str(caught.value).startswith(f"{path}:{line}: {message}")
    assert caught.value.hint is not None and "export the report again" in caught.value.hint


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty"),
    ("\r\n\r\n  \r\n", "is empty"),
    (",,,\n,,\n", "is empty"),
    ("Navn,E-mail\nSøren,soren@example.org\n", "is not an attendance report invitemail knows"),
    ("just some text\n", "is not an attendance report invitemail knows"),
])
def test_attendance_empty_or_unknown_report_says_so(tmp_path: Path, text: str,
                                                    message: str) -> None:
    path = write_report(tmp_path, "r.csv", text, encoding="utf-8")
    with pytest.raises(AttendanceError) as caught:
        read_attendance(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert caught.value.hint is not None and "Zoom" in caught.value.hint


def test_attendance_broken_row_inside_the_table_names_its_line(tmp_path: Path) -> None:
    text = ("Attended,Email,Time in Session (minutes)\nYes,a@example.org,3\n"
            'Yes,"b@example.org\n')
    path = write_report(tmp_path, "r.csv", text, encoding="utf-8")
    with pytest.raises(AttendanceError) as caught:
        read_attendance(path)
    assert str(caught.value).startswith(f"{path}:3: a quoted cell starts here")


@pytest.mark.parametrize("make", ["missing", "folder", "binary"])
def test_attendance_unreadable_file_says_what_to_give(tmp_path: Path, make: str) -> None:
    path = tmp_path / "r.csv"
    if make == "folder":
        path.mkdir()
    elif make == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AttendanceError) as caught:
        read_attendance(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert caught.value.hint


def test_attendance_teams_list_of_2021_with_full_name_and_email(tmp_path: Path) -> None:
    text = ("Meeting Summary\nTotal Number of Participants\t2\n\n"
            "Full Name\tJoin Time\tLeave Time\tDuration\tEmail\tRole\tParticipant ID (UPN)\n"
            "Åse Møller\t12/10/2020, 2:00:01 PM\t12/10/2020, 3:00:00 PM\t59m 59s\t\t"
            "Attendee\tAse@Example.org\n"
            "Karen Blixen\t12/10/2020, 2:00:01 PM\t12/10/2020, 3:00:00 PM\t1h\t"
            "karen@example.org\tAttendee\tkaren@example.org\n")
    path = write_report(tmp_path, "teams.csv", text, encoding="utf-16")
    attendance = read_attendance(path)
    assert attendance.kind == "Teams attendance list"
    # An empty Email cell: the sign-in name (UPN) is the address.
    assert {k: p.attended for k, p in attendance.people.items()} == {
        "ase@example.org": True, "karen@example.org": True}
    assert attendance.no_address == []
