"""Process infrastructure shared by the entry points: logging and metrics files, the command line, capability checks."""
