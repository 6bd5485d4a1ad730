"""Keep the denormalized access-group ids and the groups' counts equal to the assignment rows, in the same
transaction (SPEC §4, issue 17); and answer orgs' and keys' hooks (orgs/hooks.py) for the assignments."""
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from orgs import hooks

from . import services
from .models import AccessGroup, KeyAccessGroup, TeamAccessGroup


@receiver(post_save, sender=TeamAccessGroup)
@receiver(post_delete, sender=TeamAccessGroup)
def team_assignment_changed(sender, instance: TeamAccessGroup, created: bool = False, **kwargs) -> None:
    if created or kwargs["signal"] is post_delete:
        services.count_assignments(TeamAccessGroup, {instance.access_group_id: 1 if created else -1})
    services.sync_teams([instance.team_id])


@receiver(post_save, sender=KeyAccessGroup)
@receiver(post_delete, sender=KeyAccessGroup)
def key_assignment_changed(sender, instance: KeyAccessGroup, created: bool = False, **kwargs) -> None:
    if created or kwargs["signal"] is post_delete:
        services.count_assignments(KeyAccessGroup, {instance.access_group_id: 1 if created else -1})
    # A new row's key must still exist: nothing in the database refuses a row for a deleted key.
    services.sync_keys([instance.key_id], missing_ok=not created)


@receiver(post_delete, sender=AccessGroup)
def access_group_removed(sender, instance: AccessGroup, **kwargs) -> None:
    services.sync_after_group_removed(instance.access_group_id)


@receiver(hooks.assign_groups, dispatch_uid="accessgroups.assign_groups")
def assign_groups(sender, *, target, group_ids, organization, **kwargs) -> tuple[set[str], set[str]]:
    return services.set_assigned_groups(target=target, group_ids=group_ids, organization=organization)


@receiver(hooks.team_deleting, dispatch_uid="accessgroups.team_deleting")
def team_deleting(sender, *, team, **kwargs) -> None:
    services.team_keys_detach(team=team)
