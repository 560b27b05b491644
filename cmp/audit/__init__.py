"""The tamper-evident consent log, database-free: chain rule, checkpoint signing, verifier.

`chain` defines a log record and its hash, `signing` signs and checks checkpoints,
`verify` recomputes an exported log offline (`cmpd verify`). The format is written up
for auditors in docs/audit-log.md.
"""
