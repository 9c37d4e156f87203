"""A standalone C2SP witness (c2sp.org/tlog-witness): cosigns a log's checkpoints only when they extend what it saw.

Needs no database and nothing of the platform beyond the note, Merkle and signing primitives: it runs on a bank's
or an auditor's machine with a state directory of its own (`state`), one decision (`core`), and a small HTTP app
(`server`). `creditflow witness init|add-log|serve` is its command line (creditflow.cli.witness).
"""
