"""Fake image-generation backends for tests: small Flask apps answering like the real servers."""
