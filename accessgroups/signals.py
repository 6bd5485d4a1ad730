"""Keep the denormalized access-group ids equal to the assignment rows, in the same transaction (SPEC §4)."""
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import services
from .models import AccessGroup, KeyAccessGroup, TeamAccessGroup


@receiver(post_save, sender=TeamAccessGroup)
@receiver(post_delete, sender=TeamAccessGroup)
def team_assignment_changed(sender, instance: TeamAccessGroup, **kwargs) -> None:
    services.sync_groups([instance.access_group_id])
    services.sync_teams([instance.team_id])


@receiver(post_save, sender=KeyAccessGroup)
@receiver(post_delete, sender=KeyAccessGroup)
def key_assignment_changed(sender, instance: KeyAccessGroup, **kwargs) -> None:
    services.sync_groups([instance.access_group_id])
    services.sync_keys([instance.key_id])


@receiver(post_delete, sender=AccessGroup)
def access_group_removed(sender, instance: AccessGroup, **kwargs) -> None:
    services.sync_after_group_removed(instance.access_group_id)
