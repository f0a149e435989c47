"""Inputs: event.toml, the registrant list (CSV or .xlsx), addresses, the schedule and the
attendance report, read and checked into frozen values. Nothing here renders or sends."""
