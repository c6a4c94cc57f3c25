"""What the tests, the benchmarks and the demo share: the fake Slack, clocks, replicas of `steward serve`.

Importable as `tests.support` from the repository root (bench scripts and the demo run as modules:
`python -m bench.slack`, `python -m deploy.demo.guarded_actions`).
"""
