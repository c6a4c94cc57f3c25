"""The serving process: the WSGI app and its probes, housekeeping, the digest schedule, start-up."""
