"""The only package that touches SQL: typed functions over asyncpg, returning models."""
