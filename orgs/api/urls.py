"""REST API routes (/api/v1/) of this app: organizations, teams, users, their members, the audit log."""
from django.urls import path

from . import views

urlpatterns: list = [
    path("organizations/", views.OrganizationListView.as_view(), name="organization-list"),
    path("organizations/<str:organization_id>/", views.OrganizationDetailView.as_view(), name="organization-detail"),
    path("organizations/<str:organization_id>/members/", views.OrganizationMemberListView.as_view(),
         name="organization-member-list"),
    path("organizations/<str:organization_id>/members/<str:user_id>/", views.OrganizationMemberDetailView.as_view(),
         name="organization-member-detail"),
    path("teams/", views.TeamListView.as_view(), name="team-list"),
    path("teams/<str:team_id>/", views.TeamDetailView.as_view(), name="team-detail"),
    path("teams/<str:team_id>/members/", views.TeamMemberListView.as_view(), name="team-member-list"),
    path("teams/<str:team_id>/members/<str:user_id>/", views.TeamMemberDetailView.as_view(),
         name="team-member-detail"),
    path("users/", views.UserListView.as_view(), name="user-list"),
    path("users/<str:user_id>/", views.UserDetailView.as_view(), name="user-detail"),
    path("audit-log/", views.AuditLogView.as_view(), name="audit-log"),
]
