"""mambabench."""
