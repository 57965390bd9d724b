"""The ScaleMart Pulumi program: one stack per environment on a Docker engine (see stack/README.md)."""
