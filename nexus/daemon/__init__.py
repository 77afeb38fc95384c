"""`nexus watch`: the reconcile loop that runs ready tasks through engines.

Shell.  Level-triggered: a file event, a finished run or a timer only means "look again"; each
pass recomputes the picture from the files:

1. sync (people's edits committed as theirs, promotions) when something else wrote, a retry
   is due, or every `poll` seconds as a safety net;
2. apply finished runs, one commit each (its cost, engine and session trailers belong to one
   task), then post the messages the agent asked to send;
3. cancel runs whose task a person moved away from in_progress;
4. dispatch: claim what may start (one commit: ready → assigned → in_progress) and start a
   worker thread per run.

Crash safety: a run's report is saved in `.nexus/results/` before it is committed, and on start
the daemon applies saved reports first, then returns tasks it had claimed (assignee
`daemon@<host>:<pid>`) to ready, saying in the journal whether their session will be resumed.
"""

from nexus.daemon.loop import Daemon
from nexus.daemon.state import Active

__all__ = ["Active", "Daemon"]
