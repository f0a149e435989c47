"""Message bytes -> the relay: the plan of a run, the SMTP connections (pipelined when the
relay allows), the pace, what each reply means, retries, limits and the schedule's runs."""
