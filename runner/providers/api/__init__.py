"""API providers: OpenAI (and OpenAI-compatible servers) and Gemini."""
