"""The companion's importable package: one small module per concept of the book."""
