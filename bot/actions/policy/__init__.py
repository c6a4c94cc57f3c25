"""The policy engine: policy files read with their lines, checked, and decided on (pure, explains itself)."""
