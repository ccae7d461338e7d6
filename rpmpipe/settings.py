"""Settings: one frozen object built at the entry point, then passed down.

Precedence, lowest to highest: built-in defaults, ``rpmpipe.toml`` (``--config`` or
``RPMPIPE_CONFIG``), environment variables, command-line flags.

Environment names are ``RPMPIPE_<KEY>`` for top-level keys and ``RPMPIPE_<SECTION>_<KEY>``
for keys of a section: ``RPMPIPE_DATA_DIR``, ``RPMPIPE_BROKER_URL``,
``RPMPIPE_BROKER_PASSWORD``, ``RPMPIPE_RULES_SUPPLY_PERIOD``. No other module reads the
environment.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rpmpipe.errors import ConfigError

DEFAULT_CHARGES = {
    "99453": Decimal("22.00"),
    "99454": Decimal("47.00"),
    "99445": Decimal("47.00"),
    "99470": Decimal("26.00"),
    "99457": Decimal("52.00"),
    "99458": Decimal("41.00"),
    "99091": Decimal("51.00"),
    # CCM, PCM, BHI, APCM and RTM, near the 2026 national non-facility rates.
    "99490": Decimal("66.00"),
    "99439": Decimal("50.00"),
    "99491": Decimal("87.00"),
    "99437": Decimal("61.00"),
    "99487": Decimal("142.00"),
    "99489": Decimal("77.00"),
    "99424": Decimal("88.00"),
    "99425": Decimal("62.00"),
    "99426": Decimal("63.00"),
    "99427": Decimal("48.00"),
    "99484": Decimal("49.00"),
    "G0556": Decimal("16.00"),
    "G0557": Decimal("50.00"),
    "G0558": Decimal("111.00"),
    "98975": Decimal("20.00"),
    "98976": Decimal("47.00"),
    "98977": Decimal("47.00"),
    "98978": Decimal("47.00"),
    "98984": Decimal("47.00"),
    "98985": Decimal("47.00"),
    "98986": Decimal("47.00"),
    "98979": Decimal("26.00"),
    "98980": Decimal("52.00"),
    "98981": Decimal("41.00"),
}


@dataclass(frozen=True)
class BrokerSettings:
    url: str = "mqtt://127.0.0.1:1883"
    protocol: str = "5"  # "5" (MQTT 5) or "3.1.1"
    client_id: str = "rpmpipe-ingest"
    username: str = ""
    password: str = ""
    # A file holding the password (its first line): keeps it out of `ps` and the environment.
    password_file: str = ""
    ca: str = ""
    certfile: str = ""
    keyfile: str = ""
    # A password over plain TCP is refused unless this is set on purpose.
    allow_insecure_password: bool = False
    topic_root: str = "rpm/v1"
    shared_group: str = ""
    session_expiry_seconds: int = 7 * 24 * 3600
    batch_size: int = 2000
    flush_seconds: float = 1.0
    keepalive_seconds: int = 30
    # Largest PUBLISH payload the broker accepts (broker-config's message_size_limit); larger
    # payloads are refused by the broker, and quarantine keeps only the first bytes of one.
    message_size_limit: int = 262_144

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(
                "setting 'broker.url': expected mqtt://host:port or mqtts://host:port, "
                f"got {redact_url(self.url)!r}",
                setting="broker.url",
            )
        if self.protocol not in ("5", "3.1.1"):
            raise ConfigError(
                f"setting 'broker.protocol': expected 5 or 3.1.1, got {self.protocol!r}",
                setting="broker.protocol",
            )
        if self.batch_size < 1 or self.batch_size > 65535:
            raise ConfigError(
                "setting 'broker.batch_size': must be between 1 and 65535",
                setting="broker.batch_size",
            )
        if self.flush_seconds <= 0:
            raise ConfigError(
                "setting 'broker.flush_seconds': must be positive", setting="broker.flush_seconds"
            )


@dataclass(frozen=True)
class RuleSettings:
    supply_period: str = "rolling_30"  # or "calendar_month"
    supply_date_of_service: str = "period_end"  # or "last_reading_day" (NGS)
    secure_message_interactive: bool = False
    max_99458_units: int = 2
    max_99439_units: int = 2  # CCM: 99439 at most twice a month (CPT; MUE)
    rtm_modality: str = "musculoskeletal"  # or "respiratory", "cognitive_behavioral"
    non_chronic_icd10_chapters: str = "RSTVWXYZ"  # ICD-10 chapters never a chronic condition
    clock_skew_minutes: int = 10
    # A new enrollment starting within this many days after the last one ended continues
    # the same episode of care (one 99453, periods back to back).
    episode_gap_days: int = 30
    # A single time entry longer than this is held for review rather than counted.
    max_activity_minutes: int = 120

    def __post_init__(self) -> None:
        if self.supply_period not in ("rolling_30", "calendar_month"):
            raise ConfigError(
                "setting 'rules.supply_period': expected rolling_30 or calendar_month, "
                f"got {self.supply_period!r}",
                setting="rules.supply_period",
            )
        if self.supply_date_of_service not in ("period_end", "last_reading_day"):
            raise ConfigError(
                "setting 'rules.supply_date_of_service': expected period_end or last_reading_day, "
                f"got {self.supply_date_of_service!r}",
                setting="rules.supply_date_of_service",
            )
        if self.max_99458_units < 0:
            raise ConfigError(
                "setting 'rules.max_99458_units': must be 0 or more",
                setting="rules.max_99458_units",
            )
        if self.max_99439_units < 0:
            raise ConfigError(
                "setting 'rules.max_99439_units': must be 0 or more",
                setting="rules.max_99439_units",
            )
        if self.rtm_modality not in ("respiratory", "musculoskeletal", "cognitive_behavioral"):
            raise ConfigError(
                "setting 'rules.rtm_modality': expected respiratory, musculoskeletal or "
                f"cognitive_behavioral, got {self.rtm_modality!r}",
                setting="rules.rtm_modality",
            )
        if not all(c.isalpha() and c.isupper() for c in self.non_chronic_icd10_chapters):
            raise ConfigError(
                "setting 'rules.non_chronic_icd10_chapters': expected capital letters, "
                "e.g. RSTVWXYZ",
                setting="rules.non_chronic_icd10_chapters",
            )
        if self.episode_gap_days < 0:
            raise ConfigError(
                "setting 'rules.episode_gap_days': must be 0 or more",
                setting="rules.episode_gap_days",
            )
        if self.max_activity_minutes < 1:
            raise ConfigError(
                "setting 'rules.max_activity_minutes': must be 1 or more",
                setting="rules.max_activity_minutes",
            )


@dataclass(frozen=True)
class ScheduleSettings:
    hour: int = 2
    minute: int = 0
    timezone: str = ""  # empty: the organisation's zone
    misfire_grace_seconds: int = 6 * 3600

    def __post_init__(self) -> None:
        _check_zone("schedule.timezone", self.timezone)
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            raise ConfigError(
                "setting 'schedule.hour'/'schedule.minute': not a valid time of day",
                setting="schedule.hour",
            )


# SBR09 codes of 005010X222A1 (MB Medicare Part B, MC Medicaid, CI commercial, ...).
CLAIM_FILING_INDICATORS = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "16",
        "17",
        "AM",
        "BL",
        "CH",
        "CI",
        "DS",
        "FI",
        "HM",
        "LM",
        "MA",
        "MB",
        "MC",
        "OF",
        "TV",
        "VA",
        "WC",
        "ZZ",
    }
)


# Characters that structure an X12 file; a value holding one would be rewritten on a claim.
X12_SEPARATORS = frozenset("*:~^")
_PO_BOX = re.compile(
    r"\b(P\.?\s*O\.?\s*BOX|POST\s+OFFICE\s+BOX|POB|LOCK\s*BOX|BOX)\s*#?\s*\d", re.I
)
PROVIDER_ENTITIES = ("organization", "individual")


def is_po_box(address: str) -> bool:
    """True for a post-office (or lock) box, which 5010 refuses as the billing address."""
    return bool(_PO_BOX.search(address))


def _check_zone(name: str, zone: str) -> None:
    """An IANA zone name, or empty (the organisation's zone)."""
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"setting '{name}': unknown IANA time zone {zone!r}", setting=name
            ) from None


def _zip_digits(value: str) -> str:
    return value.replace("-", "").replace(" ", "")


def _no_separators(name: str, value: str, max_len: int) -> None:
    if len(value) > max_len:
        raise ConfigError(
            f"setting '{name}': at most {max_len} characters, got {len(value)}", setting=name
        )
    if set(value) & X12_SEPARATORS or not value.isprintable():
        raise ConfigError(
            f"setting '{name}': must not contain the X12 separators * : ~ ^ or control characters",
            setting=name,
        )


@dataclass(frozen=True)
class PayerSettings:
    name: str = ""
    claim_filing_indicator: str = ""  # SBR09, required: MB Medicare Part B, CI commercial, ...
    bill_99091_with_99457: bool = False  # CPT: 99091 is not reported with 99457
    # The payer's EDI id (2010BB NM109): for Medicare, the MAC's contractor number. A payer
    # without one is held at export (its lines wait until it is set).
    payer_id: str = ""
    # Who receives this payer's claims (1000B, ISA08, GS03); empty: billing.receiver_id/_name.
    # Claims of different receivers never share an interchange: one .837 per receiver.
    receiver_id: str = ""
    receiver_name: str = ""
    # Send frequency-7 (replacement) and -8 (void) claims for this payer? Empty: as
    # billing.replacement_claims, except Medicare Part B (MB), which reopens claims instead.
    replacement_claims: bool | None = None
    # Documentation this payer requires beyond the program's, e.g. "pro, goal_review".
    audit_requires: str = ""

    def __post_init__(self) -> None:
        _no_separators("billing.payers.*.payer_id", self.payer_id, 80)
        _no_separators("billing.payers.*.receiver_id", self.receiver_id, 15)
        _no_separators("billing.payers.*.receiver_name", self.receiver_name, 60)

    def sends_replacements(self, default: bool) -> bool:
        """Whether changed claims of this payer go out as frequency 7/8 claims."""
        if self.replacement_claims is not None:
            return self.replacement_claims
        return default and self.claim_filing_indicator != "MB"


DEFAULT_PAYERS = {"MEDICARE": PayerSettings(name="MEDICARE PART B", claim_filing_indicator="MB")}

# The keys without which no claim can name who bills it. There is no built-in identity:
# `rpmpipe export` refuses to run until each is set (`rpmpipe demo` brings its own).
BILLING_IDENTITY = (
    "provider_name",
    "provider_npi",
    "provider_tin",
    "provider_address1",
    "provider_city",
    "provider_state",
    "provider_zip",
    "contact_name",
    "contact_phone",
    "submitter_id",
    "submitter_name",
    "receiver_id",
    "receiver_name",
)


@dataclass(frozen=True)
class BillingSettings:
    # Who bills (2010AA). "organization": a clinic or group, every claim names the person who
    # rendered the service (2310B); "individual": a practitioner billing under their own NPI,
    # provider_name is then "LAST, FIRST".
    provider_entity: str = "organization"
    provider_name: str = ""
    provider_npi: str = ""
    provider_tin: str = ""
    provider_taxonomy: str = ""
    # A street address with ZIP+4 (5010 refuses a PO box and a 5-digit ZIP here).
    provider_address1: str = ""
    provider_city: str = ""
    provider_state: str = ""
    provider_zip: str = ""
    # Where payments go when it is not the billing address (2010AB), e.g. a PO box; optional.
    pay_to_address1: str = ""
    pay_to_city: str = ""
    pay_to_state: str = ""
    pay_to_zip: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    submitter_id: str = ""
    submitter_name: str = ""
    receiver_id: str = ""
    receiver_name: str = ""
    usage: str = "T"  # ISA15: T test, P production
    place_of_service: str = "11"
    replacement_claims: bool = False
    charges: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_CHARGES))
    modifiers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    payers: Mapping[str, PayerSettings] = field(default_factory=lambda: dict(DEFAULT_PAYERS))
    # NPI -> "LAST, FIRST" of practitioners who order RPM (enrollments.ordering_npi). They
    # render the claims: under an organisation every claim names one (2310B).
    rendering_providers: Mapping[str, str] = field(default_factory=dict)
    # NPI -> taxonomy code of a rendering provider (PRV*PE in 2310B), optional.
    rendering_taxonomies: Mapping[str, str] = field(default_factory=dict)
    # Hold lines whose documentation is incomplete (consent, order, contacts, time log, ...).
    audit_before_export: bool = True
    # A Jinja2 letter template replacing the built-in appeal letter ("" = built-in).
    appeal_template: str = ""

    def __post_init__(self) -> None:
        if self.provider_entity not in PROVIDER_ENTITIES:
            raise ConfigError(
                "setting 'billing.provider_entity': expected organization or individual, "
                f"got {self.provider_entity!r}",
                setting="billing.provider_entity",
            )
        if (
            self.provider_entity == "individual"
            and self.provider_name
            and not _PRACTITIONER_NAME.match(self.provider_name)
        ):
            raise ConfigError(
                "setting 'billing.provider_name': an individual billing provider is named "
                "'LAST, FIRST'",
                setting="billing.provider_name",
            )
        if self.provider_zip and not (
            _zip_digits(self.provider_zip).isdigit() and len(_zip_digits(self.provider_zip)) == 9
        ):
            raise ConfigError(
                "setting 'billing.provider_zip': the billing provider needs a 9-digit ZIP+4 "
                "(e.g. 62701-0001)",
                setting="billing.provider_zip",
            )
        if self.provider_address1 and is_po_box(self.provider_address1):
            raise ConfigError(
                "setting 'billing.provider_address1': must be a street address, not a PO box; "
                "put a PO box in billing.pay_to_address1 (the pay-to address)",
                setting="billing.provider_address1",
            )
        pay_to = {
            "pay_to_address1": self.pay_to_address1,
            "pay_to_city": self.pay_to_city,
            "pay_to_state": self.pay_to_state,
            "pay_to_zip": self.pay_to_zip,
        }
        if any(pay_to.values()):
            missing = [f"billing.{k}" for k, v in pay_to.items() if not v]
            if missing:
                raise ConfigError(
                    f"setting 'billing.pay_to_address1': a pay-to address also needs "
                    f"{', '.join(missing)}",
                    setting="billing.pay_to_address1",
                )
            digits = _zip_digits(self.pay_to_zip)
            if not (digits.isdigit() and len(digits) in (5, 9)):
                raise ConfigError(
                    "setting 'billing.pay_to_zip': expected a 5- or 9-digit ZIP",
                    setting="billing.pay_to_zip",
                )
        for name in BILLING_IDENTITY:
            _no_separators(f"billing.{name}", getattr(self, name), 80)
        for npi, code in self.rendering_taxonomies.items():
            _no_separators(f"billing.rendering_taxonomies.{npi}", code, 50)
        if self.provider_npi and not npi_is_valid(self.provider_npi):
            raise ConfigError(
                f"setting 'billing.provider_npi': {self.provider_npi!r} is not a valid NPI "
                "(10 digits with a Luhn check digit)",
                setting="billing.provider_npi",
            )
        if self.provider_tin and not (len(self.provider_tin) == 9 and self.provider_tin.isdigit()):
            raise ConfigError(
                "setting 'billing.provider_tin': expected 9 digits", setting="billing.provider_tin"
            )
        if self.usage not in ("T", "P"):
            raise ConfigError(
                f"setting 'billing.usage': expected T (test) or P (production), got {self.usage!r}",
                setting="billing.usage",
            )
        if not (len(self.place_of_service) == 2 and self.place_of_service.isdigit()):
            raise ConfigError(
                "setting 'billing.place_of_service': expected a two-digit place-of-service code",
                setting="billing.place_of_service",
            )
        for code, amount in self.charges.items():
            if amount < 0:
                raise ConfigError(
                    f"setting 'billing.charges.{code}': must not be negative",
                    setting=f"billing.charges.{code}",
                )
            if amount != amount.quantize(Decimal("0.01")):
                raise ConfigError(
                    f"setting 'billing.charges.{code}': {amount} has more than two decimal places",
                    setting=f"billing.charges.{code}",
                )
        for npi in self.rendering_providers:
            if not npi_is_valid(npi):
                raise ConfigError(
                    f"setting 'billing.rendering_providers': {npi!r} is not a valid NPI "
                    "(10 digits with a Luhn check digit)",
                    setting="billing.rendering_providers",
                )
        for payer_id, payer in self.payers.items():
            if not payer.claim_filing_indicator:
                raise ConfigError(
                    f"setting 'billing.payers.{payer_id}.claim_filing_indicator' is required "
                    "(MB Medicare Part B, MC Medicaid, CI commercial, ...)",
                    setting=f"billing.payers.{payer_id}.claim_filing_indicator",
                )
            if payer.claim_filing_indicator not in CLAIM_FILING_INDICATORS:
                raise ConfigError(
                    f"setting 'billing.payers.{payer_id}.claim_filing_indicator': "
                    f"{payer.claim_filing_indicator!r} is not an X12 claim filing indicator code",
                    setting=f"billing.payers.{payer_id}.claim_filing_indicator",
                )

    def missing_identity(self) -> list[str]:
        """The billing identity keys not set (``billing.provider_npi``, ...)."""
        return [f"billing.{name}" for name in BILLING_IDENTITY if not getattr(self, name).strip()]


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("rpmpipe-data")
    database_url: str = ""  # empty: SQLite file under data_dir
    # A file holding the database URL (its first line), for a URL with a password in it.
    database_url_file: str = ""
    log_level: str = "INFO"
    log_format: str = "auto"  # text lines when stderr is a terminal, else JSON; or "json", "text"
    organization_timezone: str = "America/New_York"
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    rules: RuleSettings = field(default_factory=RuleSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)

    def __post_init__(self) -> None:
        _check_zone("organization_timezone", self.organization_timezone)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(
                f"setting 'log_level': expected DEBUG/INFO/WARNING/ERROR, got {self.log_level!r}",
                setting="log_level",
            )
        if self.log_format not in ("auto", "json", "text"):
            raise ConfigError(
                f"setting 'log_format': expected auto, json or text, got {self.log_format!r}",
                setting="log_format",
            )

    @property
    def effective_database_url(self) -> str:
        """The registry URL: the configured one, or a SQLite file under the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def readings_dir(self) -> Path:
        return self.store.readings_dir

    @property
    def quarantine_dir(self) -> Path:
        return self.store.quarantine_dir

    @property
    def exports_dir(self) -> Path:
        return self.store.exports_dir

    @property
    def org_zone(self) -> ZoneInfo:
        return ZoneInfo(self.organization_timezone)

    # What each stage receives: its sections, never the whole settings (the application
    # holds those and hands these out; tests/rpmpipe/test_layers.py keeps stages to them).

    @cached_property
    def store(self) -> StoreSettings:
        """Where the data lives; built once per settings object (``replace`` builds anew)."""
        return StoreSettings(self.data_dir, self.effective_database_url)

    @property
    def ingest(self) -> IngestSettings:
        return IngestSettings(self.broker, self.store, self.rules.clock_skew_minutes)

    @property
    def metrics(self) -> MetricsSettings:
        allowing_99091 = frozenset(
            pid for pid, payer in self.billing.payers.items() if payer.bill_99091_with_99457
        )
        return MetricsSettings(self.rules, self.store, self.organization_timezone, allowing_99091)

    @property
    def export(self) -> ExportSettings:
        return ExportSettings(self.billing, self.store, self.organization_timezone)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StoreSettings:
    """Where the data lives: the data directory (readings, quarantine, exports) and the
    registry's URL (the configured one, or a SQLite file under the data directory)."""

    data_dir: Path
    database_url: str

    @property
    def readings_dir(self) -> Path:
        return self.data_dir / "readings"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"

    @property
    def exports_dir(self) -> Path:
        return self.data_dir / "exports"


@dataclass(frozen=True)
class IngestSettings:
    """What ingest uses: the broker, the store, and how far ahead a device clock may run."""

    broker: BrokerSettings
    store: StoreSettings
    clock_skew_minutes: int


@dataclass(frozen=True)
class MetricsSettings:
    """What metrics uses: the rules, the store, the organisation's zone, and the payers that
    take 99091 with 99457 (``billing.payers.*.bill_99091_with_99457``)."""

    rules: RuleSettings
    store: StoreSettings
    organization_timezone: str
    payers_allowing_99091: frozenset[str]

    @property
    def org_zone(self) -> ZoneInfo:
        return ZoneInfo(self.organization_timezone)


@dataclass(frozen=True)
class ExportSettings:
    """What export uses: the billing section, the store, and the organisation's zone."""

    billing: BillingSettings
    store: StoreSettings
    organization_timezone: str

    @property
    def org_zone(self) -> ZoneInfo:
        return ZoneInfo(self.organization_timezone)


def redact_url(url: str) -> str:
    """A URL safe to log: any password is replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def npi_check_digit(first_nine: str) -> str:
    """The NPI check digit: Luhn over the prefix 80840 and the first nine digits."""
    total = 0
    for i, d in enumerate(int(c) for c in reversed("80840" + first_nine)):
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def npi_is_valid(npi: str) -> bool:
    """Ten digits whose last one is the check digit of the first nine."""
    return len(npi) == 10 and npi.isdigit() and npi_check_digit(npi[:9]) == npi[9]


# --- loading -------------------------------------------------------------------------------

_SECTIONS = {"broker": BrokerSettings, "rules": RuleSettings, "schedule": ScheduleSettings}
_PRACTITIONER_NAME = re.compile(r"^\s*[^,<>\s][^,<>]*,\s*[^,<>\s][^,<>]*$")
_BILLING_TABLES = ("charges", "modifiers", "payers", "rendering_providers", "rendering_taxonomies")


def load_settings(
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from file, environment and flag overrides (in that order).

    ``overrides`` uses dotted keys (``"broker.url"``) or top-level keys (``"data_dir"``);
    ``None`` values are ignored so that unset flags fall through.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    path = config_path or env.get("RPMPIPE_CONFIG")
    source_of: dict[str, str] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist (from --config or RPMPIPE_CONFIG)")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from exc
        for key, value in raw.items():
            source_of[key] = str(p)
            if isinstance(value, dict):
                for sub in value:
                    source_of[f"{key}.{sub}"] = str(p)

    def put(dotted: str, value: Any, source: str) -> None:
        head, _, tail = dotted.partition(".")
        if tail:
            raw.setdefault(head, {})[tail] = value
        else:
            raw[head] = value
        source_of[dotted] = source

    for name, dotted in environment_names().items():
        if name in env:
            put(dotted, env[name], name)
    _refuse_unknown_variables(env)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            put(dotted, value, "command line")

    try:
        # Each section checks its own values as it is built (``__post_init__``).
        settings = _secrets_from_files(_build(raw, source_of))
    except ConfigError as exc:
        # Name where the bad value came from (file, variable or flag), as type errors do.
        named = exc.fields.get("setting")
        if named in source_of and exc.code != "unknown_setting":  # that one names it already
            raise ConfigError(
                f"{exc} (from {source_of[named]})", code=exc.code, **exc.fields
            ) from None
        raise
    _warn_password_on_command_line(raw, source_of)
    return settings


def environment_names() -> dict[str, str]:
    """Every ``RPMPIPE_*`` variable that names a setting, with the setting's dotted name."""
    names: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        if f.name in _SECTIONS:
            for sf in dataclasses.fields(_SECTIONS[f.name]):
                names[f"RPMPIPE_{f.name}_{sf.name}".upper()] = f"{f.name}.{sf.name}"
        elif f.name == "billing":
            for sf in dataclasses.fields(BillingSettings):
                if sf.name not in _BILLING_TABLES:
                    names[f"RPMPIPE_BILLING_{sf.name}".upper()] = f"billing.{sf.name}"
        else:
            names[f"RPMPIPE_{f.name}".upper()] = f.name
    return names


# Variables of the test suite (tests/conftest.py), not settings of rpmpipe.
_TEST_SUITE_VARIABLES = ("RPMPIPE_REQUIRE_SERVICES", "RPMPIPE_UPDATE_GOLDEN")


def _refuse_unknown_variables(env: Mapping[str, str]) -> None:
    """A misspelt ``RPMPIPE_*`` variable is an error naming it and the closest real name,
    as an unknown key in the settings file is: a typo must never be ignored silently."""
    known = [*environment_names(), "RPMPIPE_CONFIG"]
    for name in sorted(env):
        if (
            not name.startswith("RPMPIPE_")
            or name in known
            or name == "RPMPIPE_CONFIG"
            or name.startswith("RPMPIPE_TEST_")
            or name in _TEST_SUITE_VARIABLES
        ):
            continue
        table = name.removeprefix("RPMPIPE_BILLING_").lower()
        if name.startswith("RPMPIPE_BILLING_") and table in _BILLING_TABLES:
            raise ConfigError(
                f"environment variable {name}: billing.{table} is a table; set it in the "
                "settings file (--config or RPMPIPE_CONFIG)",
                code="unknown_setting",
                variable=name,
            )
        raise ConfigError(
            f"environment variable {name} names no setting{_closest_variable(name, known)}",
            code="unknown_setting",
            variable=name,
        )


def _closest_variable(name: str, known: Iterable[str]) -> str:
    # Compared without the shared prefix, which would make every name look close.
    prefix = "RPMPIPE_"
    close = _closest(name.removeprefix(prefix), [k.removeprefix(prefix) for k in known])
    return close.replace("mean ", f"mean {prefix}")


def _closest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _first_line(setting: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"setting '{setting}': cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    line = text.splitlines()[0].strip() if text.strip() else ""
    if not line:
        raise ConfigError(f"setting '{setting}': {path} is empty")
    return line


def _secrets_from_files(s: Settings) -> Settings:
    """Fill ``broker.password`` and ``database_url`` from their ``*_file`` settings."""
    if s.broker.password_file:
        password = _first_line("broker.password_file", s.broker.password_file)
        s = s.replace(broker=dataclasses.replace(s.broker, password=password))
    if s.database_url_file:
        s = s.replace(database_url=_first_line("database_url_file", s.database_url_file))
    return s


def _warn_password_on_command_line(raw: Mapping[str, Any], source_of: Mapping[str, str]) -> None:
    """Say so when a flag carries a password: every user of the machine sees it in ``ps``."""
    for dotted, remedy in (
        ("broker.url", "RPMPIPE_BROKER_PASSWORD_FILE"),
        ("broker.password", "RPMPIPE_BROKER_PASSWORD_FILE"),
        ("database_url", "RPMPIPE_DATABASE_URL_FILE"),
    ):
        if source_of.get(dotted) != "command line":
            continue
        head, _, tail = dotted.partition(".")
        value = raw.get(head, {}).get(tail) if tail else raw.get(head)
        if not isinstance(value, str) or not value:
            continue
        if tail == "password" or urlsplit(value).password:
            sys.stderr.write(
                f"warning: a password is on the command line ({dotted}); other users can "
                f"read it with ps: put it in a file named by {remedy} instead\n"
            )


def _build(raw: Mapping[str, Any], source_of: Mapping[str, str]) -> Settings:
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(Settings)
    for key, value in raw.items():
        if key in _SECTIONS:
            kwargs[key] = _build_section(_SECTIONS[key], key, value, source_of)
        elif key == "billing":
            kwargs[key] = _build_billing(value, source_of)
        elif key in hints:
            kwargs[key] = _coerce(hints[key], value, key, source_of.get(key, "settings"))
        else:
            known = [*hints, *_SECTIONS, "billing"]
            raise ConfigError(
                f"unknown setting '{key}' in {source_of.get(key, 'settings')}{_closest(key, known)}",
                code="unknown_setting",
                setting=key,
            )
    return Settings(**kwargs)


def _build_section(cls: type, section: str, value: Any, source_of: Mapping[str, str]) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"setting '{section}' must be a table")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, item in value.items():
        dotted = f"{section}.{key}"
        if key not in hints:
            raise ConfigError(
                f"unknown setting '{dotted}' in {source_of.get(dotted, 'settings')}"
                + _closest(key, hints).replace("mean ", f"mean {section}."),
                code="unknown_setting",
                setting=dotted,
            )
        kwargs[key] = _coerce(hints[key], item, dotted, source_of.get(dotted, "settings"))
    return cls(**kwargs)


def _build_billing(value: Any, source_of: Mapping[str, str]) -> BillingSettings:
    if not isinstance(value, dict):
        raise ConfigError("setting 'billing' must be a table", setting="billing")
    plain = {k: v for k, v in value.items() if k not in _BILLING_TABLES}
    base: BillingSettings = _build_section(BillingSettings, "billing", plain, source_of)
    charges = dict(DEFAULT_CHARGES)
    for code, amount in (value.get("charges") or {}).items():
        charges[str(code)] = _coerce(Decimal, amount, f"billing.charges.{code}", "config file")
    modifiers = {}
    for code, mods in (value.get("modifiers") or {}).items():
        mods = [mods] if isinstance(mods, str) else mods
        if not isinstance(mods, list) or not all(isinstance(m, str) and len(m) == 2 for m in mods):
            raise ConfigError(
                f"billing.modifiers.{code}: expected a list of two-character modifiers",
                setting=f"billing.modifiers.{code}",
            )
        modifiers[str(code)] = tuple(mods)
    payers = dict(DEFAULT_PAYERS)
    for payer_id, conf in (value.get("payers") or {}).items():
        try:
            payers[str(payer_id)] = _build_section(
                PayerSettings, f"billing.payers.{payer_id}", conf, source_of
            )
        except ConfigError as exc:
            # A payer's own checks name it "billing.payers.*": put in its key, keep the code.
            here = f"billing.payers.{payer_id}."
            fields = {
                k: v.replace("billing.payers.*.", here) if k == "setting" else v
                for k, v in exc.fields.items()
            }
            raise ConfigError(
                str(exc).replace("billing.payers.*.", here), code=exc.code, **fields
            ) from None
    rendering = {}
    for npi, name in (value.get("rendering_providers") or {}).items():
        # The practitioner's name goes on every claim they render: refuse blanks and the
        # "<LAST>, <FIRST>" placeholder that `rpmpipe export` suggests.
        if not isinstance(name, str) or not _PRACTITIONER_NAME.match(name):
            raise ConfigError(
                f"setting 'billing.rendering_providers.{npi}': expected the practitioner's name "
                f"as 'LAST, FIRST', got {name!r}",
                setting=f"billing.rendering_providers.{npi}",
            )
        rendering[str(npi)] = name
    taxonomies = {
        str(npi): _coerce(str, code, f"billing.rendering_taxonomies.{npi}", "config file")
        for npi, code in (value.get("rendering_taxonomies") or {}).items()
    }
    return dataclasses.replace(
        base,
        charges=charges,
        modifiers=modifiers,
        payers=payers,
        rendering_providers=rendering,
        rendering_taxonomies=taxonomies,
    )


def _coerce(kind: Any, value: Any, name: str, source: str) -> Any:
    where = f"setting '{name}' (from {source})"
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            return int(str(value).strip())
        if kind is float:
            return float(str(value).strip())
        if kind is Decimal:
            return Decimal(str(value).strip())
        if kind is Path:
            return Path(str(value))
        if kind is str:
            if not isinstance(value, str | int):
                raise ValueError
            return str(value)
    except (ValueError, InvalidOperation):
        raise ConfigError(
            f"{where}: expected {getattr(kind, '__name__', kind)}, got {value!r}"
        ) from None
    raise ConfigError(f"{where}: unsupported value {value!r}")
