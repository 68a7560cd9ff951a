"""Pure rules of the domain: standard library only, no I/O, no clock of their own."""
