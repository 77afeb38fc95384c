"""Plans: the oracle's decomposition of a goal, and its proposed changes to a live DAG.

Pure: text and values in, values out (no files, clock or network).  A plan file
(`plans/<name>.yaml`, schema in docs/planning.md) is YAML:

    kind: plan                 # or `adapt` (then `changes:` instead of `tasks:`)
    goal: Migrate our auth service to OAuth2
    parent: k7q2mx4p           # only when it decomposes that (XL) task
    tasks:
      - {key: auth-spec, title: Specify the flow, size: M, role: aria, deps: [], ...}
    approved: '2025-01-01T12:00:00Z'    # written by `nexus approve`, with
    task_ids: {auth-spec: p3zq8d1a}     # the id each key became

`extract` finds the YAML or JSON mapping in an oracle's answer (a fenced block inside prose,
the bare text, or the first `{...}` object); `check_plan` and `check_changes` validate it and
report *every* problem with the key and field it concerns; `Rejected` carries them.

Modules: model (the values), reading, fields and checking (plans), adapting (change lists),
reviews, writing (plan files, prompt lines).
"""

from nexus.errors import ValidationError
from nexus.plans.adapting import (
    EDITABLE,
    check_changes,
    describe_changes,
)
from nexus.plans.checking import (
    check_plan,
    creation_order,
    validated,
)
from nexus.plans.fields import (
    key_problem,
)
from nexus.plans.model import (
    EXTRA_FIELDS,
    KEY_RE,
    KINDS,
    MAX_ANSWER_CHARS,
    MAX_TASKS,
    OP_FIELDS,
    OPS,
    SIZES,
    TASK_KEYS,
    Change,
    Criterion,
    Decomposition,
    Plan,
    PlanFile,
    PlanTask,
    Problem,
    Refused,
    Rejected,
    Review,
)
from nexus.plans.reading import (
    description,
    extract,
    header,
    load_yaml,
    read_file,
    replace_description,
)
from nexus.plans.reviews import (
    check_review,
    review_section,
)
from nexus.plans.writing import (
    change_mapping,
    dump,
    mark_approved,
    render,
    task_lines,
    task_mapping,
)

__all__ = [
    "EDITABLE",
    "EXTRA_FIELDS",
    "KEY_RE",
    "KINDS",
    "MAX_ANSWER_CHARS",
    "MAX_TASKS",
    "OPS",
    "OP_FIELDS",
    "SIZES",
    "TASK_KEYS",
    "Change",
    "Criterion",
    "Decomposition",
    "Plan",
    "PlanFile",
    "PlanTask",
    "Problem",
    "Refused",
    "Rejected",
    "Review",
    "ValidationError",
    "change_mapping",
    "check_changes",
    "check_plan",
    "check_review",
    "creation_order",
    "describe_changes",
    "description",
    "dump",
    "extract",
    "header",
    "key_problem",
    "load_yaml",
    "mark_approved",
    "read_file",
    "render",
    "replace_description",
    "review_section",
    "task_lines",
    "task_mapping",
    "validated",
]
