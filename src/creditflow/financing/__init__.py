"""Certificate financing: the bank's automatic policy (ACT/360 discounting), agreements co-signed on the ledger, maturity clearing to ISO 20022 pain.001, and the network view."""
