"""Plain SQL of cmp (schema migrations and named queries); shipped as package data."""
