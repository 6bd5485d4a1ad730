"""LiteLLM-compatible `/team/*`, `/user/*` and `/organization/*` routes: parse, ask the policy, call the services.

One module per resource; `orgs.api.litellm_urls` mounts the views named here."""
from .organizations import (  # noqa: F401 - the routes' views
    OrganizationDeleteView,
    OrganizationInfoView,
    OrganizationListView,
    OrganizationMemberAddView,
    OrganizationMemberDeleteView,
    OrganizationMemberUpdateView,
    OrganizationMemberView,
    OrganizationNewView,
    OrganizationUpdateView,
)
from .teams import (  # noqa: F401 - the routes' views
    TeamAvailableView,
    TeamDeleteView,
    TeamInfoView,
    TeamListV2View,
    TeamListView,
    TeamMemberAddView,
    TeamMemberDeleteView,
    TeamMemberUpdateView,
    TeamMemberView,
    TeamNewView,
    TeamPermissionsListView,
    TeamPermissionsUpdateView,
    TeamUpdateView,
)
from .users import (  # noqa: F401 - the routes' views
    UserDeleteView,
    UserInfoV2View,
    UserInfoView,
    UserListView,
    UserNewView,
    UserUpdateView,
)
