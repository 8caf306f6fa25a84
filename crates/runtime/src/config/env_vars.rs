//! The one list of `CASESCOPE_*` variables (docs/configuration.md documents each; a
//! test keeps the two in step).

/// Every environment variable CaseScope reads, with what it sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("CASESCOPE_CONFIG", "path of a TOML config file"),
    (
        "CASESCOPE_SERVICE",
        "run one service (cases, ingest, detect, ioc, report, integrations, gateway) instead of all",
    ),
    ("CASESCOPE_LISTEN", "address the gRPC + HTTP server binds"),
    (
        "CASESCOPE_DATA_DIR",
        "directory for embedded storage (SQLite, tantivy, blobs)",
    ),
    (
        "CASESCOPE_DATABASE_URL",
        "PostgreSQL URL of this service's database (one-service mode)",
    ),
    ("CASESCOPE_NATS_URL", "NATS URL (one-service mode)"),
    (
        "CASESCOPE_NATS_NAMESPACE",
        "optional subject/stream prefix to share a NATS account",
    ),
    (
        "CASESCOPE_LOG",
        "log filter (tracing EnvFilter syntax), e.g. info,casescope=debug",
    ),
    ("CASESCOPE_LOG_FORMAT", "text or json"),
    (
        "CASESCOPE_SHUTDOWN_TIMEOUT_SECS",
        "seconds allowed for graceful shutdown",
    ),
    (
        "CASESCOPE_LEASE_TTL_SECS",
        "lease time-to-live of per-file stage work",
    ),
    (
        "CASESCOPE_RECONCILE_PERIOD_SECS",
        "period of each service's reconciler",
    ),
    (
        "CASESCOPE_MAX_DB_CONNECTIONS",
        "PostgreSQL pool size per service",
    ),
    (
        "CASESCOPE_SERVICE_DISCOVERY",
        "dns (one connection per service address) or kubernetes (balance across the Service's ready pods)",
    ),
    (
        "CASESCOPE_KUBERNETES_NAMESPACE",
        "namespace of the Services watched with kubernetes discovery",
    ),
    (
        "CASESCOPE_CASES_ADDR",
        "gRPC address of the cases service, for services that call it",
    ),
    (
        "CASESCOPE_INGEST_ADDR",
        "gRPC address of the ingest service",
    ),
    (
        "CASESCOPE_DETECT_ADDR",
        "gRPC address of the detect service",
    ),
    ("CASESCOPE_IOC_ADDR", "gRPC address of the ioc service"),
    (
        "CASESCOPE_REPORT_ADDR",
        "gRPC address of the report service",
    ),
    (
        "CASESCOPE_INTEGRATIONS_ADDR",
        "gRPC address of the integrations service",
    ),
    (
        "CASESCOPE_GATEWAY_ADDR",
        "gRPC address of the gateway service",
    ),
    (
        "CASESCOPE_LOGSOURCE_MAPPING",
        "Sigma logsource mapping file (TOML) replacing the built-in one, placeholder values included",
    ),
    (
        "CASESCOPE_REPORT_TEMPLATE_DIR",
        "directory whose report.html.j2 / report.md.j2 replace the built-in report layouts",
    ),
    (
        "CASESCOPE_REPORT_PDF_FONT",
        "TrueType font of PDF reports (default: DejaVu Sans or Liberation Sans where installed)",
    ),
    (
        "CASESCOPE_REPORT_PDF_BOLD_FONT",
        "bold TrueType font of PDF reports' headings (default: the regular font's bold sibling)",
    ),
    (
        "CASESCOPE_AI_ENABLED",
        "deployment flag: false refuses AI report summaries even with an LLM endpoint (default true)",
    ),
    (
        "CASESCOPE_LLM_URL",
        "LLM endpoint of AI report summaries: base URL, e.g. http://127.0.0.1:8080/v1 (OpenAI-compatible) or http://127.0.0.1:11434 (Ollama); unset: AI summaries are refused",
    ),
    (
        "CASESCOPE_LLM_API",
        "wire format of the LLM endpoint: openai (chat completions, default) or ollama (/api/chat)",
    ),
    (
        "CASESCOPE_LLM_MODEL",
        "model name sent to the LLM endpoint (required with CASESCOPE_LLM_URL)",
    ),
    (
        "CASESCOPE_LLM_API_KEY",
        "bearer key of the LLM endpoint (never logged or shown)",
    ),
    (
        "CASESCOPE_LLM_API_KEY_FILE",
        "file holding the LLM key, instead of CASESCOPE_LLM_API_KEY",
    ),
    (
        "CASESCOPE_LLM_CONNECT_TIMEOUT_SECS",
        "seconds to connect to the LLM endpoint (default 5)",
    ),
    (
        "CASESCOPE_LLM_FIRST_TOKEN_TIMEOUT_SECS",
        "seconds from the request to the first token of the answer, prompt processing included (default 120)",
    ),
    (
        "CASESCOPE_LLM_STALL_TIMEOUT_SECS",
        "seconds the answer may pause between two chunks once begun (default 30)",
    ),
    (
        "CASESCOPE_LLM_TOTAL_TIMEOUT_SECS",
        "seconds one summary call may take in all (default 600)",
    ),
    (
        "CASESCOPE_LLM_PROMPT_TOKENS",
        "token budget of the summary's prompt, instructions and evidence (default 6000; estimated at 3 bytes per token)",
    ),
    (
        "CASESCOPE_LLM_ANSWER_TOKENS",
        "tokens of the summary's answer at most (default 1024)",
    ),
    (
        "CASESCOPE_INTEGRATIONS_KEY",
        "key sealing integration secrets at rest (base64 of 32 random bytes, e.g. `openssl rand -base64 32`); unset: integration secrets must be env:/file: references",
    ),
    (
        "CASESCOPE_INTEGRATIONS_KEY_FILE",
        "file holding the integrations key, instead of CASESCOPE_INTEGRATIONS_KEY",
    ),
    (
        "CASESCOPE_INTEGRATIONS_ALLOW_NETS",
        "comma-separated networks integrations may call although private, loopback or link-local (e.g. 10.20.0.0/16 for an internal DFIR-IRIS); default none",
    ),
    (
        "CASESCOPE_INTEGRATIONS_SECRETS_DIR",
        "directory of file:<name> integration secret references (e.g. a mounted Kubernetes Secret)",
    ),
    (
        "CASESCOPE_LLM_REDACT",
        "redact secret-looking values (passwords, tokens, keys) before they are sent to the LLM (default true)",
    ),
    (
        "CASESCOPE_FILE_STAGES",
        "stages a file goes through after ingest (detect, ioc_hunt; empty: none): its status is ready when all are done",
    ),
    (
        "CASESCOPE_EVENT_STORE",
        "event store of the ingest service: tantivy (embedded, default) or opensearch",
    ),
    (
        "CASESCOPE_INTERNAL_KEY",
        "secret (32+ characters) the gateway and the services share to pass the caller's identity; required per service in cluster mode",
    ),
    (
        "CASESCOPE_INTERNAL_KEY_FILE",
        "file holding the internal key, instead of CASESCOPE_INTERNAL_KEY",
    ),
    (
        "CASESCOPE_ADMIN_PASSWORD",
        "password of the first administrator (admin) on a fresh installation; unset: generated and shown once",
    ),
    (
        "CASESCOPE_ADMIN_PASSWORD_FILE",
        "file holding the first administrator's password, instead of CASESCOPE_ADMIN_PASSWORD",
    ),
    (
        "CASESCOPE_SIGNING_KEY_FILE",
        "PKCS#8 PEM of the Ed25519 key signing access tokens (default: created in the data directory)",
    ),
    (
        "CASESCOPE_VERIFY_KEY_FILES",
        "comma-separated SPKI PEMs of earlier signing keys that still verify during a rotation",
    ),
    (
        "CASESCOPE_RATE_LIMIT_PER_SECOND",
        "requests per second one user may sustain (default 200)",
    ),
    (
        "CASESCOPE_RATE_LIMIT_BURST",
        "requests one user may make at once after being idle (default 2000)",
    ),
    (
        "CASESCOPE_MAX_UPLOADS_PER_USER",
        "uploads one user may have in flight (default 8)",
    ),
    (
        "CASESCOPE_AUDIT_RETENTION_DAYS",
        "days audit records are kept before a signed checkpoint replaces them (default 365)",
    ),
    (
        "CASESCOPE_TRUSTED_PROXIES",
        "comma-separated addresses or blocks (10.0.0.0/8) of reverse proxies whose X-Forwarded-For names the client; none by default",
    ),
    (
        "CASESCOPE_OIDC_ISSUER",
        "issuer URL of an OpenID Connect provider for sign-in (authorization code + PKCE); unset: off",
    ),
    (
        "CASESCOPE_OIDC_CLIENT_ID",
        "CaseScope's client id at the OpenID Connect provider",
    ),
    (
        "CASESCOPE_OIDC_CLIENT_SECRET",
        "its client secret (unset: a public client, PKCE alone)",
    ),
    (
        "CASESCOPE_OIDC_CLIENT_SECRET_FILE",
        "file holding the client secret, instead of CASESCOPE_OIDC_CLIENT_SECRET",
    ),
    (
        "CASESCOPE_OIDC_REDIRECT_URIS",
        "comma-separated exact redirect URIs a sign-in may return to (the web app's)",
    ),
    (
        "CASESCOPE_OIDC_LOOPBACK_REDIRECTS",
        "also allow http://127.0.0.1:<port>/ redirects for `casescope login --oidc` (default true)",
    ),
    (
        "CASESCOPE_OIDC_SCOPES",
        "comma-separated scopes asked for (default openid,profile,email,groups)",
    ),
    (
        "CASESCOPE_OIDC_USERNAME_CLAIM",
        "ID-token claim naming the user (default preferred_username, then email, then sub)",
    ),
    (
        "CASESCOPE_OIDC_GROUPS_CLAIM",
        "ID-token claim listing the user's groups (default groups)",
    ),
    (
        "CASESCOPE_OIDC_ROLE_MAP",
        "comma-separated GROUP=ROLE (admin, analyst, auditor, viewer); the strongest mapped role wins",
    ),
    (
        "CASESCOPE_OIDC_DEFAULT_ROLE",
        "role of a user in no mapped group (unset: refused)",
    ),
    (
        "CASESCOPE_CORS_ALLOWED_ORIGINS",
        "comma-separated exact browser origins granted cross-origin calls (gRPC-web); none by default",
    ),
    (
        "CASESCOPE_EVIDENCE_STORE",
        "evidence store of the ingest service: local (files under the data dir, default) or s3",
    ),
    ("CASESCOPE_S3_BUCKET", "bucket of the s3 evidence store"),
    (
        "CASESCOPE_S3_ENDPOINT",
        "URL of an S3-compatible server (unset: AWS); path-style requests",
    ),
    ("CASESCOPE_S3_REGION", "S3 region (default us-east-1)"),
    ("CASESCOPE_S3_PREFIX", "key prefix inside the bucket"),
    (
        "CASESCOPE_S3_ACCESS_KEY_ID",
        "S3 access key id (unset: the standard AWS credential sources)",
    ),
    (
        "CASESCOPE_S3_SECRET_ACCESS_KEY",
        "S3 secret access key (never logged)",
    ),
    (
        "CASESCOPE_S3_SECRET_ACCESS_KEY_FILE",
        "file holding the S3 secret access key, instead of CASESCOPE_S3_SECRET_ACCESS_KEY",
    ),
    (
        "CASESCOPE_S3_REQUEST_TIMEOUT_SECS",
        "timeout of one S3 request (an upload part, a download range); default 120",
    ),
    (
        "CASESCOPE_OPENSEARCH_URL",
        "OpenSearch base URL, without credentials (required with opensearch)",
    ),
    (
        "CASESCOPE_OPENSEARCH_INDEX",
        "OpenSearch index holding every case's events",
    ),
    (
        "CASESCOPE_OPENSEARCH_USERNAME",
        "OpenSearch basic-auth user",
    ),
    (
        "CASESCOPE_OPENSEARCH_PASSWORD",
        "OpenSearch basic-auth password (never logged)",
    ),
    (
        "CASESCOPE_OPENSEARCH_PASSWORD_FILE",
        "file holding the OpenSearch password, instead of CASESCOPE_OPENSEARCH_PASSWORD",
    ),
    (
        "CASESCOPE_OPENSEARCH_CA_FILE",
        "PEM file of CA certificates to trust for OpenSearch",
    ),
    (
        "CASESCOPE_OPENSEARCH_INSECURE",
        "true: accept any OpenSearch TLS certificate (test clusters only)",
    ),
    (
        "CASESCOPE_OPENSEARCH_REQUEST_TIMEOUT_SECS",
        "limit of one OpenSearch request",
    ),
    (
        "CASESCOPE_OPENSEARCH_CONNECT_TIMEOUT_SECS",
        "limit of one connection attempt to OpenSearch",
    ),
    (
        "CASESCOPE_OPENSEARCH_BULK_MAX_BYTES",
        "largest _bulk request body",
    ),
    (
        "CASESCOPE_OPENSEARCH_MAX_RETRIES",
        "retries of an OpenSearch request refused for overload or failing in transit",
    ),
    (
        "CASESCOPE_OPENSEARCH_SHARDS",
        "primary shards of the OpenSearch index, when CaseScope creates it",
    ),
    (
        "CASESCOPE_OPENSEARCH_REPLICAS",
        "replicas of the OpenSearch index, when CaseScope creates it",
    ),
    (
        "CASESCOPE_SERVER",
        "CLI: server the client commands talk to",
    ),
];
