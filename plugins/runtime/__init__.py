"""Built-in OCI runtimes."""
