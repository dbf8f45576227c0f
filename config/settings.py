"""The one settings module; every value is read from the environment (see .env.example)."""

import socket
import warnings
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config.database import resolve_database_url
from config.env import env_bool, env_float, env_int, env_list, env_str, load_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"

# `make run` writes a local, git-ignored .env; real deployments set variables directly.
load_dotenv(BASE_DIR / ".env")

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG is on")
    SECRET_KEY = "django-insecure-development-key-only-for-debug-mode"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "config.apps.ConsoleAdminConfig",  # django.contrib.admin, incidents first in the app list
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "analytics",
    "costsim",
    "feedback",
    "predictions",
    "notifications",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "analytics.api.middleware.ApiBodyLimitMiddleware",
    # JSON errors under /api/: NUL bytes in the URL, and any exception a view lets escape.
    "analytics.api.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # API requests with a key and no cookie skip to ApiKeyLaneEndMiddleware: what lies
    # between serves browsers (analytics/api/middleware.py).
    "analytics.api.middleware.ApiKeyLaneMiddleware",
    # Admin and Swagger UI assets are served by the service itself, also under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "analytics.api.middleware.ApiKeyLaneEndMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# Database: DATABASE_URL, or an embedded PostgreSQL started from a pip wheel (config/database.py).
# No per-request health check (a SELECT 1 round trip on every request): a connection broken
# while idle fails one request and is then discarded (docs/decisions.md, CostSim core).
DATABASES = {
    "default": {
        **dj_database_url.parse(resolve_database_url(), conn_max_age=60, conn_health_checks=False),
        "ENGINE": "django_prometheus.db.backends.postgresql",
    }
}
# An optional read replica (a streaming standby of the primary). Statistics, exports and the
# overview read from it; writes and reads inside a transaction stay on the primary
# (analytics/db.py). In tests the alias mirrors the primary's test database.
if DATABASE_REPLICA_URL := env_str("DATABASE_REPLICA_URL"):
    DATABASES["replica"] = {
        **dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=60, conn_health_checks=False),
        "ENGINE": "django_prometheus.db.backends.postgresql",
        "TEST": {"MIRROR": "default"},
    }
DATABASE_ROUTERS = ["analytics.db.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Without collectstatic (tests, a fresh `make run`), serve straight from the app folders;
# the then missing STATIC_ROOT is expected, not worth a warning on every start.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")

# Bodies above 1 MiB get a 413 from ApiBodyLimitMiddleware; Django's own limit sits above it
# so that the JSON error, not Django's generic 400, is what clients see.
API_MAX_BODY_BYTES = 1_048_576
DATA_UPLOAD_MAX_MEMORY_SIZE = 4 * API_MAX_BODY_BYTES

REDIS_URL = env_str("REDIS_URL") or None
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "analytics.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["analytics.api.permissions.IsTenantKey"],
    # DRF's JSON parser plus a nesting bound (analytics/api/parsers.py).
    "DEFAULT_PARSER_CLASSES": ["analytics.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["analytics.api.renderers.MoneyJSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "analytics.api.pagination.CursorPage",
    "DEFAULT_SCHEMA_CLASS": "analytics.api.openapi.ErrorResponsesAutoSchema",
    "EXCEPTION_HANDLER": "analytics.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 50,
    "COERCE_DECIMAL_TO_STRING": False,
    "DATETIME_FORMAT": "iso-8601",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "costwise API",
    "DESCRIPTION": "Cost intelligence for teams running AI agents and LLM features.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status` or `severity` field with different vocabularies.
    "ENUM_NAME_OVERRIDES": {
        "AnomalySeverityEnum": "analytics.models.choices.Severity",
        "AnomalyStatusEnum": "analytics.models.choices.AnomalyStatus",
        "RunStatusEnum": "analytics.models.choices.RunStatus",
        "SnapshotStatusEnum": "analytics.models.choices.SnapshotStatus",
        "FeedbackSeverityEnum": "feedback.choices.FeedbackSeverity",
        "CanaryStatusEnum": "costsim.models.CanaryStatus",
        "VerdictEnum": "costsim.models.Verdict",
        "DatasetVerdictEnum": "costsim.api.safety_serializers.DATASET_VERDICTS",
        "IncidentKindEnum": "analytics.models.incidents.IncidentKind",
        "ChannelKindEnum": "notifications.models.TENANT_CHANNEL_KIND_CHOICES",
        "BudgetPeriodEnum": "analytics.models.choices.BudgetPeriod",
    },
}

# Metrics (django-prometheus); migrations metrics are off as in netbox.
PROMETHEUS_EXPORT_MIGRATIONS = False
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR") or None

INSTANCE_ID = env_str("INSTANCE_ID") or socket.gethostname() or "unknown"
GIT_COMMIT_SHA = (env_str("GIT_COMMIT_SHA") or "unknown")[:12]

# Celery: Redis in production; a file-system broker needs no server on a fresh machine.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(DATA_DIR / "celery" / "queue"),
        "data_folder_out": str(DATA_DIR / "celery" / "queue"),
        # Queue bindings; the default is ./control of whatever directory a process runs in.
        "control_folder": str(DATA_DIR / "celery" / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL == "filesystem://"
    else {}
)
CELERY_RESULT_BACKEND = REDIS_URL or f"file://{DATA_DIR / 'celery' / 'results'}"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_TIME_LIMIT = 15 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 14 * 60
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One message reserved per pool process: a job chunk runs for seconds to minutes, and a
# worker holding several unstarted chunks (the default reserves 4) leaves another worker
# idle at the end of a run while it works through them one by one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Fanned-out per-tenant jobs (docs/architecture.md, "Jobs and locks"): beat's task only
# dispatches a run, its tenants go out in chunks of JOBS_CHUNK_SIZE, each chunk one task on
# JOBS_CHUNK_QUEUE; the dispatchers run on JOBS_DISPATCH_QUEUE. A worker started without
# --queues consumes both (config/celery.py). A chunk is tried JOBS_CHUNK_MAX_RETRIES + 1
# times at most.
JOBS_CHUNK_SIZE = env_int("JOBS_CHUNK_SIZE", 50, minimum=1, maximum=10_000)
JOBS_DISPATCH_QUEUE = env_str("JOBS_DISPATCH_QUEUE") or "celery"
JOBS_CHUNK_QUEUE = env_str("JOBS_CHUNK_QUEUE") or "jobs"
JOBS_CHUNK_MAX_RETRIES = env_int("JOBS_CHUNK_MAX_RETRIES", 3, minimum=0, maximum=20)
# A chunk neither claimed nor sent again for this long has stalled (its message was lost):
# the sweeper sends it again, or fails it once its attempts are spent. Keep it above a chunk
# task's hard time limit (25 min), so a chunk still running is never taken for stalled.
JOBS_CHUNK_STALL_MINUTES = env_int("JOBS_CHUNK_STALL_MINUTES", 30, minimum=1, maximum=24 * 60)
CELERY_BEAT_SCHEDULE = {
    "analytics-hourly-snapshots": {
        "task": "analytics.hourly_snapshots",
        "schedule": crontab(minute=5),  # every hour at :05 UTC
        "options": {"expires": 50 * 60},
    },
    "analytics-detect-anomalies": {
        "task": "analytics.detect_anomalies",
        "schedule": crontab(minute=10),  # every hour at :10 UTC
        "options": {"expires": 50 * 60},
    },
    "analytics-sweep-job-runs": {
        "task": "analytics.sweep_job_runs",
        "schedule": crontab(minute="*/5"),  # every 5 minutes
        "options": {"expires": 4 * 60},
    },
    "analytics-daily-snapshots": {
        "task": "analytics.daily_snapshots",
        "schedule": crontab(hour=0, minute=30),  # every day at 00:30 UTC
        "options": {"expires": 6 * 3600},
    },
    "analytics-close-lapsed-reservations": {
        "task": "analytics.close_lapsed_reservations",
        "schedule": crontab(),  # every minute
        "options": {"expires": 50},
    },
    "predictions-run": {
        "task": "predictions.run_cycle",
        "schedule": crontab(minute=20),  # every hour at :20 UTC
        "options": {"expires": 50 * 60},
    },
    "feedback-detect-patterns": {
        "task": "feedback.detect_patterns",
        "schedule": crontab(minute=20),  # every hour at :20 UTC
        "options": {"expires": 50 * 60},
    },
    "costsim-canary": {
        "task": "costsim.canary",
        "schedule": crontab(hour=2, minute=0),  # every day at 02:00 UTC
        "options": {"expires": 6 * 3600},
    },
    "notifications-dispatch": {
        "task": "notifications.dispatch",
        "schedule": 10.0,  # every 10 seconds
        "options": {"expires": 9},
    },
    "notifications-budget-thresholds": {
        "task": "notifications.budget_thresholds",
        "schedule": crontab(minute="*/5"),  # every 5 minutes
        "options": {"expires": 4 * 60},
    },
    "notifications-daily-digest": {
        "task": "notifications.daily_digest",
        "schedule": crontab(hour=0, minute=15),  # every day at 00:15 UTC, for the day before
        "options": {"expires": 6 * 3600},
    },
    "costsim-prune-provenance": {
        "task": "costsim.prune_provenance",
        "schedule": crontab(hour=3, minute=0),  # every day at 03:00 UTC
        "options": {"expires": 6 * 3600},
    },
    "analytics-maintain-partitions": {
        "task": "analytics.maintain_partitions",
        "schedule": crontab(hour=0, minute=45),  # every day at 00:45 UTC
        "options": {"expires": 6 * 3600},
    },
    "analytics-record-retention": {
        "task": "analytics.record_retention",
        "schedule": crontab(hour=3, minute=30),  # every day at 03:30 UTC
        "options": {"expires": 6 * 3600},
    },
}

# Cost records: month partitions created this many months ahead of the current one
# (analytics.services.partitions), and the raw records' retention: a tenant's own
# retention_days, else this default (analytics.services.retention). Retention deletes at most
# COSTWISE_RETENTION_BATCH_SIZE records per statement, each in its own transaction.
COSTWISE_PARTITION_MONTHS_AHEAD = env_int(
    "COSTWISE_PARTITION_MONTHS_AHEAD", 3, minimum=1, maximum=24
)
COSTWISE_RECORD_RETENTION_DAYS = env_int(
    "COSTWISE_RECORD_RETENTION_DAYS", 400, minimum=31, maximum=3660
)
COSTWISE_RETENTION_BATCH_SIZE = env_int(
    "COSTWISE_RETENTION_BATCH_SIZE", 5000, minimum=100, maximum=100_000
)

# CostSim: sandbox, V2 shadow and its safety net (README "Configuration")
COSTSIM_V2_SANDBOX = env_bool("COSTSIM_V2_SANDBOX", False)
COSTSIM_DRIFT_THRESHOLD = env_float("COSTSIM_DRIFT_THRESHOLD", 0.2, minimum=0.0, maximum=1.0)
COSTSIM_FAILURE_THRESHOLD = env_int("COSTSIM_FAILURE_THRESHOLD", 3, minimum=1)
COSTSIM_SCHEMA_ERROR_THRESHOLD = env_int("COSTSIM_SCHEMA_ERROR_THRESHOLD", 5, minimum=1)
COSTSIM_AUTO_RECOVER = env_bool("COSTSIM_AUTO_RECOVER", True)
COSTSIM_DISABLE_TTL_HOURS = env_float("COSTSIM_DISABLE_TTL_HOURS", 24, minimum=0)
COSTSIM_PROVENANCE_ENABLED = env_bool("COSTSIM_PROVENANCE_ENABLED", True)
COSTSIM_PROVENANCE_RETENTION_DAYS = env_int("COSTSIM_PROVENANCE_RETENTION_DAYS", 90, minimum=1)
COSTSIM_MODEL_VERSION = env_str("COSTSIM_MODEL_VERSION") or "2.0.0"
COSTSIM_ADAPTER_VERSION = env_str("COSTSIM_ADAPTER_VERSION") or "2.0.0"
COSTSIM_CANARY_SAMPLE_COUNT = env_int("COSTSIM_CANARY_SAMPLE_COUNT", 100, minimum=10, maximum=1000)
COSTSIM_CANARY_DRIFT_THRESHOLD = env_float(
    "COSTSIM_CANARY_DRIFT_THRESHOLD", 0.2, minimum=0.0, maximum=1.0
)
# Fewest evaluated samples on which the canary judges V2 and the divergence report gives KL
# and JS; below it they report `insufficient_data`. 100 is the smallest round n at which one
# stray sample cannot push the ten-bin KL past the 0.2 gate alone (docs/decisions.md,
# "Canary and drift with too few samples").
COSTSIM_MIN_DRIFT_SAMPLES = env_int("COSTSIM_MIN_DRIFT_SAMPLES", 100, minimum=1, maximum=1000)
if COSTSIM_CANARY_SAMPLE_COUNT < COSTSIM_MIN_DRIFT_SAMPLES:
    raise ImproperlyConfigured(
        f"COSTSIM_CANARY_SAMPLE_COUNT ({COSTSIM_CANARY_SAMPLE_COUNT}) is below "
        f"COSTSIM_MIN_DRIFT_SAMPLES ({COSTSIM_MIN_DRIFT_SAMPLES}): the scheduled canary "
        "could never take enough samples to decide"
    )
COSTSIM_CALIBRATION_TOLERANCE = env_float("COSTSIM_CALIBRATION_TOLERANCE", 0.25, minimum=0.0)
COSTSIM_RUNBOOK_URL = env_str("COSTSIM_RUNBOOK_URL") or ""
ALERTMANAGER_URL = (env_str("ALERTMANAGER_URL") or "").rstrip("/") or None
ALERTMANAGER_TIMEOUT = env_float("ALERTMANAGER_TIMEOUT", 10, minimum=0.1)
# Attempts of one Alertmanager alert in the notifications outbox before it is `failed`.
COSTSIM_ALERT_MAX_ATTEMPTS = env_int("COSTSIM_ALERT_MAX_ATTEMPTS", 10, minimum=1)

# Analytics, feedback and predictions
ANALYTICS_SNAPSHOT_THRESHOLD_PCT = env_float("ANALYTICS_SNAPSHOT_THRESHOLD_PCT", 200, minimum=0)
# Detection monitors: the project-wide defaults of every tenant's detection settings
# (docs/detection.md). An incident is opened only when its impact passes both money floors.
ANALYTICS_DETECTION_DEFAULTS = {
    "spike_min_impact_cents": env_float("DETECTION_SPIKE_MIN_IMPACT_CENTS", 100, minimum=0),
    "spike_min_impact_pct": env_float("DETECTION_SPIKE_MIN_IMPACT_PCT", 40, minimum=0),
    "drift_min_impact_cents": env_float("DETECTION_DRIFT_MIN_IMPACT_CENTS", 100, minimum=0),
    "drift_min_impact_pct": env_float("DETECTION_DRIFT_MIN_IMPACT_PCT", 25, minimum=0),
    "outlier_min_impact_cents": env_float("DETECTION_OUTLIER_MIN_IMPACT_CENTS", 100, minimum=0),
    "outlier_min_impact_pct": env_float("DETECTION_OUTLIER_MIN_IMPACT_PCT", 20, minimum=0),
    # A user's, feature's or model's change is an incident of its own only when it adds at
    # least this much to the tenant's expected spend over the same days.
    "entity_min_tenant_pct": env_float("DETECTION_ENTITY_MIN_TENANT_PCT", 5, minimum=0),
    "z_threshold": env_float("DETECTION_Z_THRESHOLD", 3.5, minimum=0.5, maximum=20),
    "min_history_days": env_int("DETECTION_MIN_HISTORY_DAYS", 28, minimum=7, maximum=56),
    "monitored_dimensions": ["user", "feature", "model"],
    "suppression_days": env_int("DETECTION_SUPPRESSION_DAYS", 14, minimum=0, maximum=365),
}
FAILURE_PATTERN_THRESHOLD = env_int("FAILURE_PATTERN_THRESHOLD", 3, minimum=1)
FAILURE_PATTERN_WINDOW_HOURS = env_int("FAILURE_PATTERN_WINDOW_HOURS", 24, minimum=1)
COST_SPIKE_THRESHOLD_PERCENT = env_float("COST_SPIKE_THRESHOLD_PERCENT", 50, minimum=0)
COST_SPIKE_MIN_RUNS = env_int("COST_SPIKE_MIN_RUNS", 5, minimum=2)
PREDICTION_VALIDITY_HOURS = env_int("PREDICTION_VALIDITY_HOURS", 24, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Notifications (README, "Notifications")
# Lifts the https-only and public-address rules on channel URLs: tests and local demos only.
NOTIFY_ALLOW_PRIVATE_URLS = env_bool("NOTIFY_ALLOW_PRIVATE_URLS", False)
NOTIFY_TIMEOUT = env_float("NOTIFY_TIMEOUT", 5, minimum=0.1, maximum=30)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 8, minimum=1, maximum=50)
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 20, minimum=1, maximum=500)
# CA bundle that webhook and Slack TLS certificates are verified against; empty = certifi's.
NOTIFY_CA_BUNDLE = env_str("NOTIFY_CA_BUNDLE") or ""
# Links in messages point here (the admin page of the incident or budget).
NOTIFY_BASE_URL = env_str("NOTIFY_BASE_URL") or "http://127.0.0.1:8000"
# Project-wide (staff) channels for CostSim breaker trips and recoveries; each one set is
# a channel. The webhook secret is `whsec_` + base64, as a receiver's library expects.
NOTIFY_BREAKER_WEBHOOK_URL = env_str("NOTIFY_BREAKER_WEBHOOK_URL") or ""
NOTIFY_BREAKER_WEBHOOK_SECRET = env_str("NOTIFY_BREAKER_WEBHOOK_SECRET") or ""
NOTIFY_BREAKER_SLACK_URL = env_str("NOTIFY_BREAKER_SLACK_URL") or ""
NOTIFY_BREAKER_EMAIL_TO = env_list("NOTIFY_BREAKER_EMAIL_TO", [])
if NOTIFY_BREAKER_WEBHOOK_URL and not NOTIFY_BREAKER_WEBHOOK_SECRET.startswith("whsec_"):
    raise ImproperlyConfigured("NOTIFY_BREAKER_WEBHOOK_SECRET must be set to whsec_<base64>")
# Email: Django's own settings. The console backend prints messages instead of sending them.
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL") or "costwise@localhost"

# Budget reservations (README, "Budget reservations"). False: a reserve or release commits
# without waiting for the WAL flush, so a budget's lock is held for the statements alone;
# a crash of the database server can then lose the last ~0.6 s of acknowledged reservations
# (never a concurrent overshoot). True: every reservation is durable once answered.
BUDGET_RESERVE_SYNCHRONOUS_COMMIT = env_bool("BUDGET_RESERVE_SYNCHRONOUS_COMMIT", False)
