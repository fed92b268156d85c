"""What the `codex` commands and the Python API do, one module per command (the CLI only parses and prints)."""
