"""The terminal surface beyond plain text: progress per node and running agents for
`nexus status`, and the live full-screen `nexus dashboard`.

    view.py   pure: subtree progress, elapsed times, the dashboard's board model
    app.py    shell: the Textual application, polling the workspace (imported only by
              `nexus dashboard`, so other commands never pay for Textual)
"""
