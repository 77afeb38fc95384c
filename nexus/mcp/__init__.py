"""The MCP surface: `nexus mcp`, a stdio server that lets an MCP client (Claude Code, Codex, ...)
run the whole lifecycle — create a project, plan, approve, execute, complete, resume.

    projects.py  which workspace a call means: the projects root, names, the current project
    tools.py     the tools as plain functions over the Service (no SDK): arguments → Reply
    server.py    the official `mcp` SDK's server: schemas, errors as tool errors, resources

Only server.py imports the SDK (about a second of imports), and only `nexus mcp` imports it.
"""
