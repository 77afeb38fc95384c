"""The command-line surface.  Commands parse options, call `nexus.service`, render."""
