"""The web surface: `nexus serve` (dashboard page, REST API, live WebSocket/SSE feed).

starlette and uvicorn are imported only here and by the serve command, so `nexus --help`
stays fast.
"""
