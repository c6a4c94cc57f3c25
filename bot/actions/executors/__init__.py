"""Executors: how a policy-approved request runs (`webhook`, `command`, `python`, `mlflow`), and the checks
`steward policy check` makes of them."""
