"""What operators see: redacted logs, the status snapshot and its renderings."""
