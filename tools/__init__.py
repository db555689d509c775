"""Developer scripts (not part of the installed `shared` package); run them from the repository root."""
