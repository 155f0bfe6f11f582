"""digaas: Dig as a Service, measures how long DNS changes take to reach nameservers."""

__version__ = "0.1.0"
