"""Enrichment providers: offline (default), Ollama and OpenAI-compatible."""
