"""What was sent, kept so nothing is sent twice: the SQLite journal, the ledger outside the
folder, the folder lock, and the check that a journal is the one the ledger knows."""
