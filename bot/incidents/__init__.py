"""Incidents: Alertmanager's webhook, the incident records and the incident digest."""
