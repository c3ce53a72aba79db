"""The edges around the engine: switches, transports, the reference bridge, the CLI."""
