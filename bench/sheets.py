"""Reading a 20,000-row registrant sheet: openpyxl (read-only) against python-calamine.

    python bench/sheets.py [--rows 20000]

Writes a workbook like a registration export (name, email, phone as a number, a date, a
language, a note) with openpyxl into a temporary folder, then reads every cell of it as text
with each library in a fresh process (best of 3 wall-clock seconds, and peak RSS), and
finally times ``invitemail check`` on the same list as .xlsx and as .csv, in an event folder
like the tests' (a check that finds no problem, so every message is built).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

import common  # noqa: F401  (puts tests/ on sys.path, for the tests' event builder)

from support.event import EventToml

TIME = "/usr/bin/time"  # GNU time (Debian: apt-get install time)

READ_OPENPYXL = """
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1], read_only=True, data_only=True)
n = 0
for row in wb.worksheets[0].iter_rows(values_only=True):
    n += len([("" if v is None else str(v)) for v in row])
wb.close()
print(n)
"""
READ_CALAMINE = """
import sys, python_calamine
wb = python_calamine.CalamineWorkbook.from_path(sys.argv[1])
n = 0
for row in wb.get_sheet_by_index(0).iter_rows():
    n += len([("" if v is None else str(v)) for v in row])
print(n)
"""
READ_INVITEMAIL = """
import sys
from pathlib import Path
from invitemail.inputs.workbook import read_sheet
n = 0
for row in read_sheet(Path(sys.argv[1])):
    n += len(row.cells)
print(n)
"""

def rows(count: int) -> list[list[object]]:
    day = dt.date(2030, 1, 1)
    return [[f"Deltager {i}", f"deltager{i}@example.org", 4520000000 + i,
             day + dt.timedelta(days=i % 300), "da" if i % 3 else "en",
             f"note {i}" * (i % 4)] for i in range(count)]


def write(folder: Path, count: int) -> tuple[Path, Path]:
    import openpyxl

    header = ["Navn", "E-mail", "Telefon", "Tilmeldt", "Sprog", "Note"]
    data = rows(count)
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Ark1")
    sheet.append(header)
    for row in data:
        sheet.append(row)
    xlsx = folder / "registrants.xlsx"
    book.save(xlsx)
    csv_path = folder / "registrants.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows([[str(c) for c in row] for row in data])
    return xlsx, csv_path


def timed(argv: list[str], repeat: int = 3) -> tuple[float, float]:
    """Best wall-clock seconds of ``repeat`` runs, and the largest peak RSS in MiB, as
    GNU time reports them (a small C parent: a child of this process would start out
    counting this process's memory)."""
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        done = subprocess.run([TIME, "-f", "%e %M", *argv], check=False, capture_output=True,
                              text=True)
        if done.returncode:
            sys.exit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
        seconds, kib = done.stderr.strip().splitlines()[-1].split()
        best, peak = min(best, float(seconds)), max(peak, int(kib) / 1024)
    return best, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    py = sys.executable
    invitemail = str(Path(py).with_name("invitemail"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        EventToml.parse().save(folder / "event.toml")  # the tests' default event
        xlsx, csv_path = write(folder, args.rows)
        print(f"{args.rows} rows: {xlsx.stat().st_size // 1024} KiB .xlsx, "
              f"{csv_path.stat().st_size // 1024} KiB .csv")
        for name, script in (("python (start-up only)", "pass"),
                             ("openpyxl read-only", READ_OPENPYXL),
                             ("python-calamine", READ_CALAMINE),
                             ("invitemail.inputs.workbook.read_sheet", READ_INVITEMAIL)):
            seconds, rss = timed([py, "-c", script, str(xlsx)])
            print(f"{name:34} {seconds:6.2f} s  peak RSS {rss:6.0f} MiB")
        for what, path in (("check, registrants.csv", csv_path),
                           ("check, registrants.xlsx", xlsx)):
            seconds, rss = timed([invitemail, "check", str(folder), "--registrants", str(path)])
            print(f"{what:34} {seconds:6.2f} s  peak RSS {rss:6.0f} MiB")


if __name__ == "__main__":
    main()
