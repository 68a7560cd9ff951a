"""Access rights and traces: the hash-chained trace log, consent enforcement, CONF.21 notices, DICA."""
