"""The core: errors, settings, questions, personas, credentials and the output store. Knows nothing of models."""
