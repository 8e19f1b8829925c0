"""Local models: Hugging Face generation and encoders, and the helpers only they need (devices, hub, formats)."""
