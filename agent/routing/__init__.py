"""Routing send-orders between the practice's workstations: practice PKI, pairing, peers, forwarding."""
