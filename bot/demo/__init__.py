"""The demo's own parts, apart from the production packages: a feature-flag store and a prediction log."""
