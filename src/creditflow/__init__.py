"""creditflow: supply-chain finance on a verifiable ledger.

Public surface: the `creditflow` command (`creditflow.cli.main`), the HTTP API (`creditflow.http`), and the
pure, database-free verifier (`creditflow.ledger.verifier`) that outsiders use to check proofs.
"""

__version__ = "0.1.0"
