"""The CPU speed path: prefix (cascade) attention and packed linear layers."""
