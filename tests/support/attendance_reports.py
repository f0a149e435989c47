"""Attendance reports as the platforms write them, for the follow-up's tests.

The layouts follow the reports Zoom and Teams export (the preamble, the sections and the
header names); the people are made up. ``write_report`` writes one in the platform's
encoding (Teams: UTF-16 with a BOM, tab-separated; Zoom: UTF-8 with a BOM, commas).
"""

from __future__ import annotations

from pathlib import Path

# Zoom's webinar attendee report: a title, the webinar's summary, then hosts, panelists and
# attendees, each section with its own header. Søren joined twice; Åse registered and did
# not come; "Late Joiner" is marked No but spent 3 minutes (counts as attended); a walk-in
# and a phone caller are not on the registrant list.
ZOOM_WEBINAR = """\
Attendee Report,,,,,,,,,,,,
Report Generated:,"Dec 10, 2020 4:31 PM",,,,,,,,,,,
Topic,Webinar ID,Actual Start Time,Actual Duration (minutes),# Registered,# Cancelled,\
Unique Viewers,Total Users,Max Concurrent Views,,,,
Persondata i praksis,842 1234 5678,"Dec 10, 2020 1:58 PM",64,5,0,4,4,4,,,,
Host Details,,,,,,,,,,,,
Attended,User Name (Original Name),Email,Join Time,Leave Time,Time in Session (minutes),\
Is Guest,Country/Region Name,,,,,
Yes,Djøf Arrangementer,arrangementer@example.org,"Dec 10, 2020 13:58:01","Dec 10, 2020 \
15:02:44",65,No,Denmark,,,,,
Panelist Details,,,,,,,,,,,,
Attended,User Name (Original Name),Email,Join Time,Leave Time,Time in Session (minutes),\
Is Guest,Country/Region Name,,,,,
Attendee Details,,,,,,,,,,,,
Attended,User Name (Original Name),First Name,Last Name,Email,Registration Time,\
Approval Status,Join Time,Leave Time,Time in Session (minutes),Is Guest,Country/Region Name,
Yes,Søren K,Søren,Kierkegaard,Soren@Example.org,"Dec 01, 2020 10:00:00",approved,\
"Dec 10, 2020 14:01:10","Dec 10, 2020 14:40:00",39,Yes,Denmark,
Yes,Søren K,Søren,Kierkegaard,soren@example.org,"Dec 01, 2020 10:00:00",approved,\
"Dec 10, 2020 14:45:10","Dec 10, 2020 15:00:00",15,Yes,Denmark,
No,Åse Møller,Åse,Møller,ase@example.org,"Dec 02, 2020 10:00:00",approved,--,--,--,Yes,\
Denmark,
No,Late Joiner,Late,Joiner,late@example.org,"Dec 02, 2020 10:00:00",approved,--,--,3,Yes,\
Denmark,
Yes,Walk In,Walk,In,walkin@example.org,,,"Dec 10, 2020 14:01:10","Dec 10, 2020 14:40:00",\
39,Yes,Denmark,
Yes,Phone Caller,,,,,,"Dec 10, 2020 14:01:10","Dec 10, 2020 14:40:00",39,Yes,,
"""

# Zoom's meeting participants report: the meeting's summary row (its "User Email" is the
# host's), a blank line, then one row per join.
ZOOM_MEETING = """\
Meeting ID,Topic,Start Time,End Time,User Email,Duration (Minutes),Participants
84212345678,Persondata i praksis,12/10/2020 01:58:12 PM,12/10/2020 03:02:44 PM,\
arrangementer@example.org,65,3

Name (Original Name),User Email,Join Time,Leave Time,Duration (Minutes),Guest,\
Recording Consent,In Waiting Room
Karen Blixen,KAREN@example.org,12/10/2020 01:59:00 PM,12/10/2020 03:00:00 PM,61,Yes,Y,No
Guest Without Mail,,12/10/2020 02:00:00 PM,12/10/2020 02:10:00 PM,10,Yes,Y,No
Outsider,outsider@example.net,12/10/2020 02:00:00 PM,12/10/2020 02:10:00 PM,10,Yes,Y,No
"""

# Teams' attendance list (2023 and later): tab-separated sections; the participants' table
# and the in-meeting activities both name each person.
TEAMS = """\
1. Summary
Meeting title\tPersondata i praksis
Attended participants\t2
Start time\t12/10/20, 1:58:12 PM
End time\t12/10/20, 3:02:44 PM
Meeting duration\t1h 4m 32s

2. Participants
Name\tFirst Join\tLast Leave\tIn-Meeting Duration\tEmail\tParticipant ID (UPN)\tRole
Åse Møller\t12/10/20, 2:00:01 PM\t12/10/20, 3:00:00 PM\t59m 59s\tase@example.org\t\
ase@example.org\tAttendee
Djøf Arrangementer\t12/10/20, 1:58:12 PM\t12/10/20, 3:02:44 PM\t1h 4m 32s\t\
arrangementer@example.org\tarrangementer@example.org\tOrganizer

3. In-Meeting Activities
Name\tJoin Time\tLeave Time\tDuration\tEmail\tRole
Åse Møller\t12/10/20, 2:00:01 PM\t12/10/20, 3:00:00 PM\t59m 59s\tase@example.org\tAttendee
"""

# Teams' older attendance list: who joined and left when, by name only.
TEAMS_OLD = """\
Full Name\tUser Action\tTimestamp
Åse Møller\tJoined\t12/10/2020, 2:00:01 PM
Åse Møller\tLeft\t12/10/2020, 3:00:00 PM
"""


def write_report(folder: Path, name: str, text: str, *, encoding: str = "utf-8-sig",
                 newline: str = "\r\n") -> Path:
    """``text`` written as the platform writes it (CRLF line ends)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path
