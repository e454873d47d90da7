"""Built-in network plugins."""
