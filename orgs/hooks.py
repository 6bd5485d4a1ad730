"""What orgs' writes ask of the apps above them (keys, accessgroups), without importing them.

orgs sits below keys and accessgroups, yet deleting a member must delete their keys, and a team's access
groups are set with the team. Each such step is a hook here: the owning app answers it in its
`AppConfig.ready` (keys/signals.py, accessgroups/signals.py), and `ask` runs it synchronously, inside the
caller's transaction and in its order, so the write and its audit entries are exactly what they were when
orgs called those services itself. A hook nobody answers is an error, never a silent skip.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal

# actor, user, team=None, organization_id=None: the user leaves the team, else the organization, else the
# platform (the user is deleted). keys deletes their keys there, each audited.
user_leaving = Signal()
# team: about to be deleted (its keys are locked). accessgroups detaches the team's keys from their groups.
team_deleting = Signal()
# team: its organization changed. keys moves the team's keys with it.
team_moved = Signal()
# target (a team or a key), group_ids, organization: make the target's access groups exactly these;
# answers (added, removed) group ids. accessgroups answers it; keys asks it too (keys sits below it).
assign_groups = Signal()
# (no arguments): the keys' budget scope (orgs.tasks.BudgetScope), reset first by `budget_reset_all`.
key_budget_scope = Signal()


def ask(hook: Signal, **kwargs: Any) -> Any:
    """Run the hook's one receiver now and return its answer; its exceptions are the caller's."""
    answers = hook.send(sender=None, **kwargs)
    if len(answers) != 1:
        raise ImproperlyConfigured(f"{len(answers)} receivers for a hook that needs exactly one: {kwargs}")
    return answers[0][1]
