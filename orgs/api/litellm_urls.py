"""LiteLLM-compatible routes of this app, mounted at the root."""
from django.urls import path

from . import litellm

urlpatterns = [
    path("team/new", litellm.TeamNewView.as_view(), name="litellm-team-new"),
    path("team/update", litellm.TeamUpdateView.as_view(), name="litellm-team-update"),
    path("team/delete", litellm.TeamDeleteView.as_view(), name="litellm-team-delete"),
    path("team/info", litellm.TeamInfoView.as_view(), name="litellm-team-info"),
    path("team/list", litellm.TeamListView.as_view(), name="litellm-team-list"),
    path("v2/team/list", litellm.TeamListV2View.as_view(), name="litellm-team-list-v2"),
    path("team/available", litellm.TeamAvailableView.as_view(), name="litellm-team-available"),
    path("team/member_add", litellm.TeamMemberAddView.as_view(), name="litellm-team-member-add"),
    path("team/member_delete", litellm.TeamMemberDeleteView.as_view(), name="litellm-team-member-delete"),
    path("team/member_update", litellm.TeamMemberUpdateView.as_view(), name="litellm-team-member-update"),
    path("team/permissions_list", litellm.TeamPermissionsListView.as_view(), name="litellm-team-permissions-list"),
    path(
        "team/permissions_update", litellm.TeamPermissionsUpdateView.as_view(), name="litellm-team-permissions-update"
    ),
    path("user/new", litellm.UserNewView.as_view(), name="litellm-user-new"),
    path("user/info", litellm.UserInfoView.as_view(), name="litellm-user-info"),
    path("v2/user/info", litellm.UserInfoV2View.as_view(), name="litellm-user-info-v2"),
    path("user/update", litellm.UserUpdateView.as_view(), name="litellm-user-update"),
    path("user/delete", litellm.UserDeleteView.as_view(), name="litellm-user-delete"),
    path("user/list", litellm.UserListView.as_view(), name="litellm-user-list"),
    path("organization/new", litellm.OrganizationNewView.as_view(), name="litellm-organization-new"),
    path("organization/update", litellm.OrganizationUpdateView.as_view(), name="litellm-organization-update"),
    path("organization/delete", litellm.OrganizationDeleteView.as_view(), name="litellm-organization-delete"),
    path("organization/info", litellm.OrganizationInfoView.as_view(), name="litellm-organization-info"),
    path("organization/list", litellm.OrganizationListView.as_view(), name="litellm-organization-list"),
    path(
        "organization/member_add", litellm.OrganizationMemberAddView.as_view(), name="litellm-organization-member-add"
    ),
    path(
        "organization/member_update",
        litellm.OrganizationMemberUpdateView.as_view(),
        name="litellm-organization-member-update",
    ),
    path(
        "organization/member_delete",
        litellm.OrganizationMemberDeleteView.as_view(),
        name="litellm-organization-member-delete",
    ),
]
