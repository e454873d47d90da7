"""Built-in registry plugins."""
