"""Built-in log drivers (entry-point group ``pallet.logging``): json-file, local, none, syslog, gelf, fluentd, journald."""
