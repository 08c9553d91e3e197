"""Helpers shared by the tests: request builders, signed clients, stand-in servers, served processes."""
