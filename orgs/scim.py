"""SCIM 2.0 for the IdP (SPEC §10): django-scim2's views with our adapters over the provisioning services.

Users map to accessctl users (`id` = the row's primary key, `userName` = `user_id`, `displayName` =
`user_alias`, the primary e-mail, `active`, `externalId`); groups to `ScimGroup` (a team or an
organization, see orgs.provisioning). The schemas served at /scim/v2/Schemas list only what is stored;
any other attribute in a request is a 400 naming it. Access: `Authorization: Bearer
<ACCESSCTL_SCIM_TOKEN>`; without a token configured, SCIM is off (404).
"""
from __future__ import annotations

import re
from typing import Any

from django.db.models import Q
from django_scim import constants, exceptions
from django_scim.adapters import SCIMGroup, SCIMUser

from accessctl.errors import ServiceError

from . import provisioning
from .models import ScimGroup, User
from .scim_config import GroupFilter, UserFilter

USER_ATTRIBUTES = {"schemas", "id", "externalid", "username", "name", "displayname", "emails", "active",
                   "groups", "meta", "password"}
GROUP_ATTRIBUTES = {"schemas", "id", "externalid", "displayname", "members", "meta"}
_MEMBER_FILTER = re.compile(r'^members\[\s*value\s+eq\s+"([^"]+)"\s*\]$', re.IGNORECASE)


def _error(message: str, status: int = 400, scim_type: str | None = None) -> exceptions.SCIMException:
    error = exceptions.BadRequestError(message, scim_type=scim_type) if status == 400 else exceptions.SCIMException(
        message, status=status, scim_type=scim_type)
    return error


def _service(call, *args, **kwargs):
    """Run a service; its refusals become SCIM errors (400, or 409 uniqueness) naming the field."""
    try:
        return call(*args, **kwargs)
    except ServiceError as exc:
        status = 409 if exc.status == 409 else 400
        scim_type = "uniqueness" if status == 409 else "invalidValue"
        raise exceptions.SCIMException(exc.message, status=status, scim_type=scim_type) from exc


def _check_attributes(data: dict[str, Any], known: set[str]) -> None:
    for key in data:
        if key.lower() not in known:
            raise _error(f'Unknown attribute "{key}": this server stores only {sorted(known)}.',
                         scim_type="invalidSyntax")


# --- adapters ------------------------------------------------------------------------------------


class ScimUserAdapter(SCIMUser):
    id_field = "pk"
    ATTR_MAP = UserFilter.attr_map

    @property
    def display_name(self) -> str:
        return self.obj.user_alias or self.obj.user_id

    @property
    def emails(self) -> list[dict[str, Any]]:
        return [{"value": self.obj.user_email, "primary": True}] if self.obj.user_email else []

    @property
    def groups(self) -> list[dict[str, Any]]:
        if self.obj._state.adding:
            return []
        groups = ScimGroup.objects.filter(
            Q(team__memberships__user=self.obj) | Q(organization__memberships__user=self.obj))
        return [{"value": str(g.pk), "$ref": ScimGroupAdapter(g, self.request).location, "display": g.display_name}
                for g in groups.distinct()]

    @property
    def meta(self) -> dict[str, Any]:
        return {"resourceType": "User", "created": self.obj.created_at.isoformat(),
                "lastModified": self.obj.updated_at.isoformat(), "location": self.location}

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schemas": [constants.SchemaURI.USER],
            "id": self.id,
            "externalId": self.obj.scim_external_id,
            "userName": self.obj.user_id,
            "emails": self.emails,
            "active": self.obj.is_active,
            "groups": self.groups,
            "meta": self.meta,
        }
        if self.obj.user_alias:
            d["name"] = {"formatted": self.obj.user_alias}
            d["displayName"] = self.obj.user_alias
        return _projected(d, self._request)

    def validate_dict(self, d: dict[str, Any]) -> None:
        _check_attributes(d, USER_ATTRIBUTES)
        super().validate_dict(d)

    def from_dict(self, d: dict[str, Any]) -> None:
        self._user_name = d.get("userName")
        fields: dict[str, Any] = {"scim_external_id": d.get("externalId") or None}
        name = d.get("displayName") or (d.get("name") or {}).get("formatted")
        fields["user_alias"] = name or None
        fields["user_email"] = _primary_email(d.get("emails"))
        if d.get("active") is not None:
            fields["is_active"] = d["active"]
        self._fields = fields

    def save(self) -> None:
        if self.obj._state.adding:
            self.obj = _service(provisioning.scim_user_create, user_name=self._user_name, fields=self._fields)
        else:
            self.obj = _service(provisioning.scim_user_update, user=self.obj, user_name=self._user_name,
                                fields=self._fields)

    def delete(self) -> None:
        _service(provisioning.scim_user_delete, user=self.obj)

    def handle_operations(self, operations: list[dict[str, Any]]) -> None:
        fields: dict[str, Any] = {}
        user_name = None
        for op, attribute, value in _operations(operations):
            removing = op == "remove"
            if attribute == "active":
                if not removing and not isinstance(value, bool):
                    raise _error('"active" must be true or false.', scim_type="invalidValue")
                fields["is_active"] = False if removing else value  # removed: deprovisioned, never active
            elif attribute in ("displayname", "name.formatted", "name"):
                fields["user_alias"] = None if removing else (value.get("formatted") if isinstance(value, dict) else value)
            elif attribute == "externalid":
                fields["scim_external_id"] = None if removing else value
            elif attribute.startswith("emails"):
                fields["user_email"] = None if removing else _primary_email(value)
            elif attribute == "username":
                user_name = value
            else:
                raise _error(f'Unknown attribute "{attribute}".', scim_type="invalidPath")
        self.obj = _service(provisioning.scim_user_update, user=self.obj, user_name=user_name, fields=fields)

    @classmethod
    def resource_type_dict(cls, request=None) -> dict[str, Any]:
        d = super().resource_type_dict(request)
        d["endpoint"] = "/Users"  # relative to the SCIM base URL (RFC 7643 §6)
        return d


class ScimGroupAdapter(SCIMGroup):
    id_field = "pk"
    ATTR_MAP = GroupFilter.attr_map

    @property
    def display_name(self) -> str:
        return self.obj.display_name

    @property
    def members(self) -> list[dict[str, Any]]:
        if self.obj._state.adding:
            return []
        users = User.objects.filter(pk__in=provisioning.group_member_ids(self.obj))
        return [{"value": str(u.pk), "$ref": ScimUserAdapter(u, self.request).location, "type": "User"}
                for u in users]

    def to_dict(self) -> dict[str, Any]:
        d = {
            "schemas": [constants.SchemaURI.GROUP],
            "id": self.id,
            "externalId": self.obj.scim_external_id,
            "displayName": self.obj.display_name,
            "members": self.members,
            "meta": {"resourceType": "Group", "created": self.obj.created_at.isoformat(),
                     "lastModified": self.obj.updated_at.isoformat(), "location": self.location},
        }
        return _projected(d, self._request)

    def validate_dict(self, d: dict[str, Any]) -> None:
        _check_attributes(d, GROUP_ATTRIBUTES)

    @classmethod
    def resource_type_dict(cls, request=None) -> dict[str, Any]:
        d = super().resource_type_dict(request)
        d["endpoint"] = "/Groups"
        return d

    def from_dict(self, d: dict[str, Any]) -> None:
        self._display_name = d.get("displayName")
        self._external_id = d.get("externalId") or None
        self._members = _users(d.get("members") or [])

    def save(self) -> None:
        if self.obj._state.adding:
            self.obj = _service(provisioning.scim_group_create, display_name=self._display_name,
                                external_id=self._external_id, members=self._members)
        else:
            self.obj = _service(provisioning.scim_group_update, group=self.obj, display_name=self._display_name,
                                external_id=self._external_id)
            _service(provisioning.scim_group_replace_members, group=self.obj, users=self._members)

    def delete(self) -> None:
        _service(provisioning.scim_group_delete, group=self.obj)

    def handle_operations(self, operations: list[dict[str, Any]]) -> None:
        for op, attribute, value in _operations(operations):
            matched = _MEMBER_FILTER.match(attribute)
            if matched and op == "remove":
                _service(provisioning.scim_group_set_members, group=self.obj, remove=_users([{"value": matched[1]}]))
            elif attribute == "members":
                users = _users(value if isinstance(value, list) else [value] if value else [])
                if op == "add":
                    _service(provisioning.scim_group_set_members, group=self.obj, add=users)
                elif op == "remove" and not value:  # `remove members`: every member
                    _service(provisioning.scim_group_replace_members, group=self.obj, users=[])
                elif op == "remove":
                    _service(provisioning.scim_group_set_members, group=self.obj, remove=users)
                else:
                    _service(provisioning.scim_group_replace_members, group=self.obj, users=users)
            elif attribute == "displayname" and op != "remove":
                self.obj = _service(provisioning.scim_group_update, group=self.obj, display_name=value)
            elif attribute == "externalid":
                self.obj = _service(provisioning.scim_group_update, group=self.obj,
                                    external_id=None if op == "remove" else value)
            else:
                raise _error(f'Unknown attribute "{attribute}".', scim_type="invalidPath")


def _operations(operations: Any):
    """(op, lower-cased attribute path, value) for each PATCH operation; a path-less one per key."""
    if not isinstance(operations, list):
        raise _error('"Operations" must be a list.', scim_type="invalidSyntax")
    for operation in operations:
        if not isinstance(operation, dict):
            raise _error("Each operation must be an object.", scim_type="invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "remove", "replace"):
            raise _error(f'Unknown PATCH op "{operation.get("op")}".', scim_type="invalidSyntax")
        path, value = operation.get("path"), operation.get("value")
        if path:
            path = str(path)
            for prefix in (constants.SchemaURI.USER + ":", constants.SchemaURI.GROUP + ":"):
                if path.startswith(prefix):
                    path = path[len(prefix):]
            yield op, path.lower() if not _MEMBER_FILTER.match(path) else path, value
        elif op == "remove":
            raise _error('"path" must be specified during "remove" PATCH calls', scim_type="noTarget")
        elif isinstance(value, dict):
            for key, item in value.items():
                yield op, key.lower(), item
        else:
            raise _error("An operation without a path needs an object value.", scim_type="invalidSyntax")


ALWAYS_RETURNED = {"id", "schemas", "meta"}


def _projected(d: dict[str, Any], request: Any) -> dict[str, Any]:
    """`?attributes=` / `?excludedAttributes=` (RFC 7644 §3.9), on top-level attributes."""
    if request is None:
        return d
    wanted = request.GET.get("attributes")
    excluded = request.GET.get("excludedAttributes")
    if wanted:
        keep = {a.strip().split(".")[0].split(":")[-1].lower() for a in wanted.split(",")} | ALWAYS_RETURNED
        return {k: v for k, v in d.items() if k.lower() in keep}
    if excluded:
        drop = {a.strip().split(".")[0].split(":")[-1].lower() for a in excluded.split(",")} - ALWAYS_RETURNED
        return {k: v for k, v in d.items() if k.lower() not in drop}
    return d


def _primary_email(value: Any) -> str | None:
    if not value:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("value")
    if isinstance(value, list):
        chosen = next((e for e in value if isinstance(e, dict) and e.get("primary")), value[0])
        return chosen.get("value") if isinstance(chosen, dict) else None
    raise _error('"emails" must be a list of {"value": ...}.', scim_type="invalidValue")


def _users(members: list[Any]) -> list[User]:
    ids = []
    for member in members:
        value = member.get("value") if isinstance(member, dict) else None
        if not isinstance(value, str) or not value.isdigit():
            raise _error(f"Unknown member {value!r}.", scim_type="invalidValue")
        ids.append(int(value))
    users = list(User.objects.filter(pk__in=ids))
    if len(users) != len(set(ids)):
        raise _error("A member names a user that does not exist.", scim_type="invalidValue")
    return users
