"""Read-only views of the store: the answers data layer, the terminal, the report, agreement and scores."""
