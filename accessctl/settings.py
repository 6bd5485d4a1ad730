"""Settings, read once from the environment (and a `.env` file if present), as SPEC §8 lists them."""
import datetime
import sys
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="accessctl-insecure-development-secret-key-change-me")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The master key authenticates as a proxy admin; it is never stored, logged or shown.
ACCESSCTL_MASTER_KEY = env.str("ACCESSCTL_MASTER_KEY", default="")
# `/metrics` needs `Authorization: Bearer <this>` when set; empty: open (serve it on an internal network).
ACCESSCTL_METRICS_TOKEN = env.str("ACCESSCTL_METRICS_TOKEN", default="")
# Teams any user may see as joinable on `/team/available` (LiteLLM's `default_internal_user_params.available_teams`).
ACCESSCTL_AVAILABLE_TEAMS = env.list("ACCESSCTL_AVAILABLE_TEAMS", default=[])

INSTALLED_APPS = [
    "accessctl.admin_apps.AccessAdminConfig",  # django.contrib.admin with accessctl's site (admin_site.py)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
    "guardian",
    "axes",
    "django_prometheus",
    "django_scim",
    "orgs",
    "keys",
    "accessgroups",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "accessctl.lanes.DatabaseLaneMiddleware",  # before anything that reads the session from the database
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# django-prometheus's per-request metrics (latency histograms by view, method, status): off by default,
# since they cost every request ~135 µs here, four times the warm check itself (README: Metrics). Our
# own counters (accessctl.metrics) are always on and cost the check a few microseconds.
PROMETHEUS_REQUEST_MIDDLEWARE = (
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
)
if env.bool("ACCESSCTL_METRICS_REQUESTS", default=False):
    MIDDLEWARE = [PROMETHEUS_REQUEST_MIDDLEWARE[0], *MIDDLEWARE, PROMETHEUS_REQUEST_MIDDLEWARE[1]]

ROOT_URLCONF = "accessctl.urls"
WSGI_APPLICATION = "accessctl.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The embedded SQLite default lets a fresh checkout run with no server; production sets DATABASE_URL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let several server processes share the file. IMMEDIATE transactions take
    # the write lock at BEGIN (waiting up to the timeout): a deferred one that read first cannot upgrade
    # once another process has committed, and would fail with "database is locked" instead of waiting.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
# Time limits on every path to the database (SPEC §6: a slow dependency never stalls the hot path).
# `make serve` (gunicorn.conf.py) tightens them for the web server; Celery workers and commands keep the
# longer defaults, their bulk statements being legitimately longer.
DB_CONNECT_TIMEOUT = env.int("DB_CONNECT_TIMEOUT", default=2)  # seconds to connect (PostgreSQL)
DB_STATEMENT_TIMEOUT_MS = env.int("DB_STATEMENT_TIMEOUT_MS", default=30_000)  # PostgreSQL statement_timeout
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    _pg_options.setdefault("connect_timeout", DB_CONNECT_TIMEOUT)
    _pg_options.setdefault(
        "options", f"-c statement_timeout={DB_STATEMENT_TIMEOUT_MS} -c idle_in_transaction_session_timeout=60000"
    )
    # A peer that vanished (host down, partition) is noticed in seconds, not after the kernel's 2 hours.
    _pg_options.setdefault("keepalives", 1)
    _pg_options.setdefault("keepalives_idle", 5)
    _pg_options.setdefault("keepalives_interval", 2)
    _pg_options.setdefault("keepalives_count", 3)
    _pg_options.setdefault("tcp_user_timeout", DB_STATEMENT_TIMEOUT_MS + 5000)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The busy timeout is SQLite's only wait: how long a write waits for another's lock.
    DATABASES["default"]["OPTIONS"]["timeout"] = env.float("DB_LOCK_TIMEOUT", default=20.0)
# Persistent connections, checked before reuse: no connection set-up per request (a flood of unknown keys
# cost one each), and a connection the server dropped is replaced instead of failing a request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_cache_url = env.str("CACHE_URL", default="") or env.str("REDIS_URL", default="")
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="accessctl"),
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A failing call opens the cache's circuit breaker (keys.breaker): the checks then skip
                # Redis for a second, so this is paid once per second per process, not per check.
                "SOCKET_CONNECT_TIMEOUT": env.float("REDIS_CONNECT_TIMEOUT", default=0.25),
                "SOCKET_TIMEOUT": env.float("REDIS_SOCKET_TIMEOUT", default=0.25),
            },
        }
    }
elif _cache_url:
    CACHES = {"default": env.cache_url_config(_cache_url)}
elif "pytest" in sys.modules:
    # The test suite alone keeps a per-process cache: parallel runs never share (or clear) one.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "accessctl"}}
else:
    # The authorization snapshots must live in a cache every process shares (gunicorn workers, runserver,
    # manage.py commands, Celery): a per-process memory cache cannot be invalidated by the process that
    # made a write, so a revoked key would stay allowed on the others until the snapshot TTL. With no
    # CACHE_URL/REDIS_URL the default is therefore a file cache: one host, like the SQLite default, and
    # atomic (written to a temporary file, then renamed). Several hosts need CACHE_URL=redis://….
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": env.str("CACHE_DIR", default=str(BASE_DIR / "var" / "cache")),
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="accessctl"),
            "OPTIONS": {"MAX_ENTRIES": 20000},
        }
    }

# With a Redis cache, invalidations are also published to every serving process (keys/feed.py), so a
# warm check needs no round trip to Redis; off, each check proves its process's copy with one shared read.
ACCESSCTL_INVALIDATION_FEED = env.bool("ACCESSCTL_INVALIDATION_FEED", default=True)

# Each serving process reads the invalidation log (keys/revocations.py) this often, in a thread of its
# own; a revocation takes effect everywhere within about this even if the cache never heard of it. The
# test suite's in-process server reads it only when a test says so.
ACCESSCTL_REVOCATION_POLL_SECONDS = env.float(
    "ACCESSCTL_REVOCATION_POLL_SECONDS", default=0.0 if "pytest" in sys.modules else 0.2
)
# How long after the log's last successful read its copies still count as current; past it (the database
# not answering) a warm check proves its copy against the database, and refuses if it cannot (fail closed).
ACCESSCTL_REVOCATION_LIVE_SECONDS = env.float("ACCESSCTL_REVOCATION_LIVE_SECONDS", default=1.0)
# /readyz answers within this, saying "unavailable" for a dependency that did not answer in time. Its
# database probe runs in a thread of its own (so a hung database cannot hold the request); the test
# suite's in-process server probes inline.
ACCESSCTL_READY_TIMEOUT_SECONDS = env.float("ACCESSCTL_READY_TIMEOUT_SECONDS", default=0.8)
ACCESSCTL_READY_PROBE_THREAD = env.bool("ACCESSCTL_READY_PROBE_THREAD", default="pytest" not in sys.modules)
# How many requests of one process may wait on the database at once (0: no limit). gunicorn.conf.py sets
# it below the thread count, so threads always remain for the checks served from memory. A request waits
# at most ACCESSCTL_DB_LANE_WAIT_SECONDS for a place (waiting holds a thread too), then gets a 503.
ACCESSCTL_DB_LANE = env.int("ACCESSCTL_DB_LANE", default=0)
ACCESSCTL_DB_LANE_WAIT_SECONDS = env.float("ACCESSCTL_DB_LANE_WAIT_SECONDS", default=0.1)
# Routes (URL names) the production WSGI handler serves around the middleware chain (accessctl/fast_lane.py):
# the gateway's calls, made once per LLM call. Empty: every request takes the whole stack.
ACCESSCTL_FAST_ROUTES = env.list("ACCESSCTL_FAST_ROUTES", default=["authz-check", "usage-report"])
# An unknown key is answered after ACCESSCTL_UNKNOWN_KEY_DELAY_SECONDS, by at most this many threads of a
# process at once (0: at once, always): a flood of random keys mostly waits, instead of taking the CPU
# and the threads real traffic needs. gunicorn.conf.py sets it to half the threads.
ACCESSCTL_UNKNOWN_KEY_SLOTS = env.int("ACCESSCTL_UNKNOWN_KEY_SLOTS", default=0)
ACCESSCTL_UNKNOWN_KEY_DELAY_SECONDS = env.float("ACCESSCTL_UNKNOWN_KEY_DELAY_SECONDS", default=0.25)
# Set by gunicorn.conf.py: a file whose presence means "draining" (SIGTERM received; /readyz says 503).
ACCESSCTL_DRAIN_FILE = env.str("ACCESSCTL_DRAIN_FILE", default="")

AUTH_USER_MODEL = "orgs.User"
# Admin login: passwords (unless ACCESSCTL_PASSWORD_LOGIN=false) and OpenID Connect (orgs/sso.py) when
# ACCESSCTL_OIDC_ISSUER and ACCESSCTL_OIDC_CLIENT_ID are set.
ACCESSCTL_PASSWORD_LOGIN = env.bool("ACCESSCTL_PASSWORD_LOGIN", default=True)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before any password check
    "django.contrib.auth.backends.ModelBackend" if ACCESSCTL_PASSWORD_LOGIN else "orgs.sso.PasswordLoginOffBackend",
    "guardian.backends.ObjectPermissionBackend",
    "orgs.sso.SSOBackend",  # answers only the SSO callback, and only when SSO is configured
]
ACCESSCTL_OIDC = {
    "issuer": env.str("ACCESSCTL_OIDC_ISSUER", default=""),
    "client_id": env.str("ACCESSCTL_OIDC_CLIENT_ID", default=""),
    "client_secret": env.str("ACCESSCTL_OIDC_CLIENT_SECRET", default=""),
    "groups_claim": env.str("ACCESSCTL_OIDC_GROUPS_CLAIM", default="groups"),
    # JSON: {"<IdP group>": {"platform": "proxy_admin"} | {"organization": "<organization_id>", "role":
    # "org_admin"} | {"team": "<team_id>", "role": "admin"} | [several]}
    "role_map": env.str("ACCESSCTL_OIDC_ROLE_MAP", default="{}"),
    "default_platform_role": env.str("ACCESSCTL_OIDC_DEFAULT_PLATFORM_ROLE", default="internal_user"),
    # Optional: otherwise read from the issuer's /.well-known/openid-configuration.
    "endpoints": {
        "authorization_endpoint": env.str("ACCESSCTL_OIDC_AUTHORIZATION_ENDPOINT", default=""),
        "token_endpoint": env.str("ACCESSCTL_OIDC_TOKEN_ENDPOINT", default=""),
        "userinfo_endpoint": env.str("ACCESSCTL_OIDC_USERINFO_ENDPOINT", default=""),
        "jwks_uri": env.str("ACCESSCTL_OIDC_JWKS_URI", default=""),
    },
}
# SCIM 2.0 for the IdP at /scim/v2/ (orgs/scim.py): on when ACCESSCTL_SCIM_TOKEN is set (the IdP's bearer).
ACCESSCTL_SCIM_TOKEN = env.str("ACCESSCTL_SCIM_TOKEN", default="")
# What a SCIM group is: {"target": "organization"} (a group = an organization and its members) or
# {"target": "team", "organization_id": "<id>"} (a group = a team of that organization).
ACCESSCTL_SCIM_GROUPS = env.json("ACCESSCTL_SCIM_GROUPS", default={"target": "organization"})
SCIM_SERVICE_PROVIDER = {
    "NETLOC": "localhost",  # unused: locations come from the request (BASE_LOCATION_GETTER)
    "AUTHENTICATION_SCHEMES": [
        {"type": "oauthbearertoken", "name": "Bearer token", "description": "ACCESSCTL_SCIM_TOKEN", "primary": True}
    ],
    "USER_ADAPTER": "orgs.scim.ScimUserAdapter",
    "GROUP_ADAPTER": "orgs.scim.ScimGroupAdapter",
    "GROUP_MODEL": "orgs.models.ScimGroup",
    "USER_FILTER_PARSER": "orgs.scim_config.UserFilter",
    "GROUP_FILTER_PARSER": "orgs.scim_config.GroupFilter",
    "AUTH_CHECK_MIDDLEWARE": "orgs.scim_config.ScimBearerAuth",
    "BASE_LOCATION_GETTER": "orgs.scim_config.base_location",
    "SCHEMAS_GETTER": "orgs.scim_config.schemas",
    "GET_EXTRA_MODEL_FILTER_KWARGS_GETTER": "orgs.scim_config.extra_filter_kwargs_getter",
}
OIDC_RP_SCOPES = "openid email profile"
OIDC_TIMEOUT = 5
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

# Applied by the user services on every path that sets a password (admin, /user/update, REST users) and by
# `changepassword` / `createsuperuser`.
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("user_id", "user_email", "user_alias")},
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin login throttling (django-axes): after 5 failed passwords for one user_id from one address, that
# pair is locked out for 15 minutes (429), whatever the password; a success resets the count. Keyed on
# the pair, so nobody can lock a user out from elsewhere by failing on purpose.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = datetime.timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "username"  # the admin login form's field, which carries the user_id
AXES_SENSITIVE_PARAMETERS = ["password"]
# Unlock with `manage.py axes_reset_username <user_id>` (or axes_reset_ip / axes_reset); the attempt
# tables stay out of the admin, whose every page is scoped by tenant.
AXES_ENABLE_ADMIN = False
# The admin login answers a lockout itself (AccessAdminSite.login) instead of through AxesMiddleware,
# which would add a layer to every request, the gateway's hot path included.
SILENCED_SYSTEM_CHECKS = ["axes.W002"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    # JSON bodies bounded in size (413) and nesting depth (400 naming the field): accessctl/jsonbody.py.
    "DEFAULT_PARSER_CLASSES": [
        "accessctl.jsonbody.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "accessctl API",
    "DESCRIPTION": "Access-control plane for LLM gateways.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One schema name per role family, whichever serializer uses it.
    "ENUM_NAME_OVERRIDES": {
        "PlatformRoleEnum": "accessctl.roles.PLATFORM_ROLE_VALUES",
        "OrgRoleEnum": "accessctl.roles.ORG_ROLE_VALUES",
        "TeamRoleEnum": "accessctl.roles.TEAM_ROLE_VALUES",
        "KeyStatusEnum": ["active", "blocked", "expired"],
    },
}

# Celery: with no broker configured, tasks run eagerly in-process (SPEC §7).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="") or None
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Beat (`make worker`): budget windows snap to the minute, hour or day, so checking every minute is enough.
# Every task is safe to run twice (bulk jobs resume after their last committed batch, the usage applier
# marks reports applied in the batch's transaction, resets and sweeps re-check what is due), so a message
# is acknowledged only once its task has finished, and a task whose worker process died goes back on the
# queue instead of being lost.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")  # one per deployment
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1  # a worker holds (unacknowledged) only what it is running
# Redis redelivers an unacknowledged message after this long (a whole worker was killed). It must outlast
# the longest task run: a bulk job works in slices of BULK_JOB_SLICE_SECONDS (plus one batch), and the
# usage applier in slices of USAGE_APPLY_SLICE_SECONDS, so neither is redelivered while it still runs.
CELERY_VISIBILITY_TIMEOUT_SECONDS = env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=300)
# kombu looks for such messages every unacked_restore_interval × unacked_restore_throttle seconds (10 × 10 by
# default): a redelivery came up to 100 s after the timeout. One look per quarter timeout (at most 10 s), each
# a single sorted-set range read, bounds it to the timeout plus a quarter.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_SECONDS,
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_SECONDS // 4)),
    "unacked_restore_throttle": 1,
}
BULK_JOB_SLICE_SECONDS = env.float("BULK_JOB_SLICE_SECONDS", default=60.0)
BULK_JOB_BATCH_SIZE = env.int("BULK_JOB_BATCH_SIZE", default=10_000)  # keys or teams per batch (transaction)
# A running job whose last batch is older than this shows as stalled, and may be resumed.
BULK_JOB_STALL_SECONDS = env.float("BULK_JOB_STALL_SECONDS", default=120.0)

# Usage reports (keys/usage.py): buffered, then applied in batches.
USAGE_BATCH_SIZE = env.int("USAGE_BATCH_SIZE", default=5000)
USAGE_APPLY_DELAY_SECONDS = env.float("USAGE_APPLY_DELAY_SECONDS", default=0.1)  # gathers a batch
USAGE_APPLY_SLICE_SECONDS = env.float("USAGE_APPLY_SLICE_SECONDS", default=30.0)
USAGE_APPLY_FLAG_SECONDS = env.int("USAGE_APPLY_FLAG_SECONDS", default=30)  # a lost run is forgotten after
USAGE_APPLY_INTERVAL_SECONDS = env.float("USAGE_APPLY_INTERVAL_SECONDS", default=5.0)
USAGE_IDEMPOTENCY_RETENTION_SECONDS = env.int("USAGE_IDEMPOTENCY_RETENTION_SECONDS", default=24 * 3600)
# How long a serving process reuses a reported key's path (its id, team, organization, user and caps)
# without a query. A key deleted, moved or given a budget meanwhile: its reports are dropped, attributed
# or checked by the applier from the current rows instead (keys/usage.py `_resolve`).
USAGE_KEY_CACHE_SECONDS = env.float("USAGE_KEY_CACHE_SECONDS", default=10.0)

CELERY_BEAT_SCHEDULE = {
    "reset-budgets": {"task": "orgs.reset_budgets", "schedule": 60.0},
    "sweep-expired-keys": {"task": "keys.sweep_expired", "schedule": 60.0},
    "apply-usage": {"task": "keys.apply_usage", "schedule": USAGE_APPLY_INTERVAL_SECONDS},
    "purge-usage": {"task": "keys.purge_usage", "schedule": 3600.0},
    "mark-keys-due-for-rotation": {"task": "keys.mark_rotation_due", "schedule": 60.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

REST_FRAMEWORK["EXCEPTION_HANDLER"] = "accessctl.errors.api_exception_handler"
