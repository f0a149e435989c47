"""The bench's inputs: one generated registrant list (Danish and English names, a fixed seed)
and fresh event folders written with the tests' event builder (tests/support/event.py)."""

from __future__ import annotations

import csv
import datetime as dt
import random
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import CONNECTIONS, EXAMPLE, SEED

from support.event import EventToml

DA_FIRST = ("Søren", "Åse", "Mette", "Jens", "Karen", "Niels", "Birgitte", "Rasmus", "Ingrid",
            "Ørjan", "Signe", "Thomas", "Lise", "Jonas", "Anne-Marie", "Mads", "Freja", "Ida",
            "Bjørn", "Kirsten", "Jørgen", "Helle", "Poul", "Maja", "Frederik", "Lærke",
            "Asger", "Aksel", "Sofie", "Villads", "Clara", "Æsa", "Søs", "Malthe", "Gry",
            "Bent", "Dorthe", "Tove", "Ulla", "Carsten")
DA_LAST = ("Jørgensen", "Sørensen", "Møller", "Østergaard", "Blæsbjerg", "Bøgh", "Ågård",
           "Frølund", "Kjær", "Læssøe", "Bækgaard", "Nørgaard", "Holm", "Dahl", "Hansen",
           "Nielsen", "Pedersen", "Thygesen", "Skræddergaard", "Brønnum", "Krøyer",
           "Ærenlund", "Søndergaard", "Vestergaard", "Lund", "Christensen", "Kierkegaard Ærø",
           "Bøgh Andersen", "Højgaard", "Dræby")
EN_FIRST = ("Sarah", "Lukas", "Priya", "Emma", "James", "Olivia", "Mohammed", "Chloe",
            "Daniel", "Aisha", "Liam", "Hannah", "Mateo", "Grace", "Noah", "Zoë")
EN_LAST = ("Thompson", "Becker", "Raman", "Walsh", "O'Brien", "Fischer", "Khan", "Murphy",
           "Schmidt", "Okafor", "Novak", "Jensen", "Larsen", "García")
ORGS = ("Ærø Kommune", "Møller & Søn ApS", "Region Sjælland", "Østergaard Advokater",
        "Københavns Universitet", "Aarhus Universitet", "Nordic Data Ltd", "Gentofte Kommune",
        "Dansk Erhverv", "Sørensen Rådgivning", "Ågård Revision", "Læssøe IT",
        "Walsh & Partners", "Roskilde Kommune", "Frederiksberg Kommune", "Aalborg Universitet")
DOMAINS = ("example.org", "example.com", "example.net")
_ASCII = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "Æ": "Ae", "Ø": "Oe", "Å": "Aa",
                        "'": "", " ": "."})


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    language: str
    organisation: str


def registrants(count: int, seed: int = SEED) -> list[Person]:
    """``count`` registrants, the same for a given seed; unique ASCII addresses."""
    rng = random.Random(seed)
    people = []
    for i in range(count):
        english = rng.random() < 0.25
        first = rng.choice(EN_FIRST if english and rng.random() < 0.8 else DA_FIRST)
        last = rng.choice(EN_LAST if english and rng.random() < 0.8 else DA_LAST)
        local = unicodedata.normalize("NFKD", f"{first}.{last}".translate(_ASCII).lower())
        local = "".join(c for c in local if c.isascii() and (c.isalnum() or c in ".-"))
        people.append(Person(f"{first} {last}", f"{local}.{i}@{DOMAINS[i % len(DOMAINS)]}",
                             "en" if english else "da", rng.choice(ORGS)))
    return people


def write_registrants(path: Path, people: Sequence[Person]) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(("Navn", "E-mail", "Sprog", "Organisation"))
        writer.writerows((p.name, p.email, p.language, p.organisation) for p in people)


def event_toml(port: int, start: dt.datetime, uid: str) -> EventToml:
    """The example event, pointed at 127.0.0.1:``port`` without TLS or login, 8 connections,
    no rate cap, starting at ``start`` (local time, in the future), with calendar id ``uid``."""
    toml = EventToml.read(EXAMPLE / "event.toml")
    toml.set("event", "start", start.replace(microsecond=0)).set("event", "uid", uid)
    toml.replace_section("smtp", {"host": "127.0.0.1", "port": port, "security": "none",
                                  "timeout": 60})
    toml.replace_section("sending", {"concurrency": CONNECTIONS, "max_attempts": 5,
                                     "max_consecutive_failures": 20})
    return toml


class Events:
    """Fresh event folders (a rerun of ``send`` on one folder sends nothing)."""

    def __init__(self, work: Path, people: Sequence[Person], start: dt.datetime) -> None:
        self.work = work
        self.people = people
        self.start = start
        self.lists: dict[int, Path] = {}
        self.made = 0

    def registrant_file(self, count: int) -> Path:
        if count not in self.lists:
            path = self.work / f"registrants-{count}.csv"
            write_registrants(path, self.people[:count])
            self.lists[count] = path
        return self.lists[count]

    def fresh(self, count: int, port: int) -> Path:
        self.made += 1
        folder = self.work / f"event-{self.made:02d}-{count}"
        folder.mkdir()
        # Each folder is an event of its own: send refuses a folder of an event it has sent
        # from elsewhere (ledger.py).
        event_toml(port, self.start, f"bench-{self.made}-{count}@example.org").save(
            folder / "event.toml")
        shutil.copyfile(self.registrant_file(count), folder / "registrants.csv")
        return folder

