"""Settings, all from environment variables prefixed FHIR_ (listed in the README)."""

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_", extra="ignore")

    host: str = "127.0.0.1"
    # TLS served by uvicorn itself (else terminate TLS at a reverse proxy: docs/DEPLOYMENT.md).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    port: int = 8080
    # Public base URL of the FHIR endpoint; defaults to http://{host}:{port}/fhir.
    base_url: str | None = None
    data_dir: Path = Path("var")

    # Set to use an external MongoDB (replica set or sharded cluster); unset = embedded FerretDB.
    mongodb_uri: str | None = None
    database: str = "fhir"
    ferretdb_bin: Path | None = None
    ferretdb_start_timeout: float = 20.0

    # Paging and limits.
    default_count: int = 20
    max_count: int = 1000
    max_body_bytes: int = 200 * 1024 * 1024
    max_bundle_entries: int = 50_000
    # Raw Binary uploads (interactions/binary.py), streamed to the blob store: their own size limit, and
    # the size up to which a FHIR JSON read of such a Binary inlines its `data`.
    max_binary_bytes: int = 1024 * 1024 * 1024
    binary_inline_bytes: int = 1024 * 1024

    # Authorisation. The full SMART authorisation server comes with the security issue; until then
    # tokens minted by `fhir-server token` are HS256 JWTs signed with a key kept in the data dir.
    auth_enabled: bool = True
    # `iss` of the tokens we issue and require; default: the FHIR base URL, which is also where OpenID
    # Connect clients find /.well-known/openid-configuration.
    token_issuer: str | None = None
    token_lifetime_seconds: int = 3600
    # A token or grant revoked on another instance is refused here within this many seconds (each
    # instance looks for new revocations at most this often; 0 = a database lookup on every request).
    revocation_check_seconds: float = 2.0

    # Background jobs (Bulk Data export) run on every instance unless turned off here.
    jobs_enabled: bool = True
    export_retention_hours: float = 24.0

    # Requests per minute per client (token client_id, else address), per instance; 0 = no limit.
    rate_limit_per_minute: int = 6000
    # Origins allowed by CORS (browser SMART apps), e.g. ["https://app.example.fr"]; empty = CORS off.
    cors_origins: list[str] = []

    # Every interaction writes an AuditEvent (turn off only for benchmarks measuring its cost).
    audit_enabled: bool = True
    # AuditEvents are kept at least this long (12 months and more), then purged by the server.
    audit_retention_days: int = 400
    # Login AuditEvents (DCM 110114) are kept longer: monthly active users must be countable for 18 months
    # (CCTP §3.1.3.5); 560 days cover any 18 calendar months. The larger of the two applies.
    login_audit_retention_days: int = 560
    # DUI rule: a practitioner sees only the usagers whose active CareTeam lists them (auth/policy.py).
    care_team_required: bool = False

    log_level: str = "INFO"

    # Embedded OAuth 2.0 authorisation server (auth/oauth.py: SMART App Launch 2 and Backend Services).
    # Registered clients from a JSON file (shape in auth/oauth.py), besides those added by the admin API.
    oauth_clients_file: Path | None = None
    # Public URL under which /oauth/* is served; default: the base URL without its trailing /fhir.
    oauth_base_url: str | None = None
    # Local test login at /oauth/authorize (`user=Practitioner/ID`); never in production.
    oauth_dev_login: bool = False
    oauth_code_lifetime_seconds: int = 60
    oauth_launch_lifetime_seconds: int = 600
    oauth_refresh_lifetime_seconds: int = 30 * 24 * 3600

    # End-user login through external OpenID Connect providers (auth/federation.py). A provider is
    # enabled when its discovery URL (.../.well-known/openid-configuration) is set. Token endpoint
    # authentication: client_secret_basic or client_secret_post ("" = from the discovery document).
    # Pro Santé Connect (practitioners, e-CPS / CPS):
    psc_discovery_url: str | None = None
    psc_client_id: str = ""
    psc_client_secret: str = ""
    psc_scope: str = "openid scope_all"
    psc_acr_values: str = "eidas1"
    psc_token_auth_method: str = ""
    # FranceConnect (usagers):
    franceconnect_discovery_url: str | None = None
    franceconnect_client_id: str = ""
    franceconnect_client_secret: str = ""
    franceconnect_scope: str = "openid given_name family_name birthdate gender"
    franceconnect_acr_values: str = "eidas1"
    franceconnect_token_auth_method: str = ""
    # How long the user has to log in at the provider; discovery/JWKS cache; provider call timeout.
    federation_login_lifetime_seconds: int = 600
    federation_cache_seconds: int = 3600
    federation_http_timeout_seconds: float = 10.0
    # Contextual calls from a structure's SI (auth/structure_token.py): OAuth 2.0 Token Exchange of an id_token
    # from these trusted OpenID providers, JSON list of {"issuer", "audience", "structure", "rpps_claim", ...}.
    trusted_structure_issuers: list[dict[str, Any]] = []

    # Fallback end-user login when Pro Santé Connect is unavailable (auth/local_login.py): a local
    # account (admin API /oauth/users) with a password, then a one-time code sent by e-mail.
    local_login: bool = False
    # After 5 consecutive wrong passwords the account is locked this long.
    local_lockout_minutes: float = 15
    # The login session (between the password and the code forms) ends after this much inactivity.
    local_session_idle_minutes: float = 15
    # The SMTP server that sends the one-time codes (STARTTLS when smtp_starttls, login when smtp_user).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = ""
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_seconds: float = 10.0

    # Notifications (jobs/outbox.py: Subscription rest-hooks, téléexpertise e-mails and SMS). The SMS
    # gateway gets `POST {url}` with JSON {"to": "+33…", "text": "…"} and `Authorization: Bearer {token}`.
    sms_gateway_url: str | None = None
    sms_gateway_token: str = ""
    # The web application's link in notices; a `{id}` in it is replaced by the dossier's ServiceRequest id.
    app_url: str | None = None
    # Failed deliveries are retried after retry_seconds, doubling each time (at most an hour), then given up.
    notify_max_attempts: int = 8
    notify_retry_seconds: float = 30.0
    notify_timeout_seconds: float = 10.0
    # How long the enrolment link of a professional invited by e-mail stays valid (teleexpertise/enrolment.py).
    tlx_invitation_hours: float = 168.0

    # HL7 v2 over MLLP (fhir_server/mllp.py, mappings/hl7v2/): the listener's port; 0 = off.
    mllp_port: int = 0
    # Its address; default: `host`.
    mllp_host: str | None = None
    mllp_max_message_bytes: int = 16 * 1024 * 1024
    # FHIR identifier system per HL7 v2 assigning authority (namespace id or universal id), for the
    # authorities that carry no OID, e.g. {"CHU-X": "urn:oid:1.2.250.1.71.4.2.2.000897406"}.
    hl7v2_identifier_systems: dict[str, str] = {}
    # Time zone of HL7 v2 timestamps sent without an offset.
    hl7v2_timezone: str = "Europe/Paris"
    # Outbound HL7 v2 peers (mappings/hl7v2/outbound.py, jobs/hl7_outbox.py): name -> {"host", "port",
    # "message": "MDM"|"ORU", "receiving_application", "receiving_facility", "sending_application",
    # "sending_facility", "timeout", "max_attempts"}; and the retry back-off (base × 2^n, capped).
    hl7_peers: dict[str, dict[str, Any]] = {}
    hl7_retry_base_seconds: float = 5.0
    hl7_retry_max_seconds: float = 600.0

    # DICOM networking (dicomweb/dimse.py, scu.py, nodes.py): the SCP's port (0 = off), address
    # (default: `host`) and AE title; the known nodes, JSON {"AET": {"host": ..., "port": ...}}; when
    # dicom_known_callers_only, associations from AE titles not in dicom_nodes are rejected.
    dicom_port: int = 0
    dicom_host: str | None = None
    dicom_aet: str = "FHIRSERVER"
    dicom_nodes: dict[str, dict[str, Any]] = {}
    dicom_known_callers_only: bool = False
    # Timeout of a DIMSE exchange (association, one response) with a peer, in seconds.
    dicom_timeout_seconds: float = 60.0
    # DICOMweb (dicomweb/): the largest STOW-RS request body accepted (413 beyond).
    dicomweb_max_stow_bytes: int = 4 * 1024 * 1024 * 1024

    # CNAM téléservice INSi (fhir_server/identity/insi.py): the endpoint of the "recherche par traits"
    # (unset = INSi not configured: identities created from traits stay provisional), the call's timeout,
    # and the mutual TLS material (PEM client certificate and key; CA bundle for the server, default: system).
    insi_url: str | None = None
    insi_timeout_seconds: float = 5.0
    insi_client_cert: Path | None = None
    insi_client_key: Path | None = None
    insi_ca_file: Path | None = None

    def resolved_base_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}/fhir").rstrip("/")

    def resolved_token_issuer(self) -> str:
        return (self.token_issuer or self.resolved_base_url()).rstrip("/")

    def resolved_ferretdb_bin(self) -> Path:
        return self.ferretdb_bin or REPO_ROOT / ".bin" / "ferretdb-embedded"


@lru_cache
def get_settings() -> Settings:
    return Settings()
