"""Payment files for banks (ISO 20022)."""
