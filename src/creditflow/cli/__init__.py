"""The creditflow command, one module per context (main assembles them). Calls services only."""
