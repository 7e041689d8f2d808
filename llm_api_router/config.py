"""Router configuration: frozen, strict Pydantic models and how to load them.

A config is a JSON object with one list of providers per API family, an optional
``auth`` section and optional ``settings``::

    {
      "openai":    [{"name": "primary", "api_key": "${OPENAI_API_KEY}", "priority": 1}],
      "anthropic": [{"api_key": "sk-ant-...", "base_url": "https://api.anthropic.com"}],
      "auth":      {"api_keys": ["${ROUTER_KEY}"]},
      "settings":  {"rate_limit_cooldown": 10},
      "state":     {"redis_url": "${REDIS_URL}", "key_prefix": "llm-router:"}
    }

Unknown keys are errors.  ``${VAR}`` in any string is replaced from the environment at
load time.  Every problem is reported as one :class:`~llm_api_router.errors.ConfigError`
naming the source, the field and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from llm_api_router.errors import ConfigError

__all__ = [
    "DEFAULT_AUTH_FAILURE_COOLDOWN",
    "DEFAULT_BASE_URLS",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_CIRCUIT_BREAKER_COOLDOWN",
    "DEFAULT_CIRCUIT_BREAKER_THRESHOLD",
    "DEFAULT_CONFIG_PATH",
    "DEFAULT_FIRST_TOKEN_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_KEEPALIVE_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_COOLDOWN",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_URL_BYTES",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_OWNER_RECORDS_MAX",
    "DEFAULT_OWNER_RECORDS_TTL",
    "DEFAULT_PRIORITY",
    "DEFAULT_RATE_LIMIT_COOLDOWN",
    "DEFAULT_RETRY_BACKOFF_BASE",
    "DEFAULT_RETRY_BACKOFF_MAX",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "FAMILIES",
    "AuthConfig",
    "Family",
    "ProviderConfig",
    "RouterConfig",
    "Settings",
    "StateConfig",
]

Family = Literal["openai", "anthropic"]
FAMILIES: tuple[Family, ...] = ("openai", "anthropic")

DEFAULT_CONFIG_PATH = "llm_router_config.json"
DEFAULT_BASE_URLS: Mapping[Family, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_PRIORITY = 1
DEFAULT_TIMEOUT = 30.0
#: How long a stream may go without its first output event when the provider sets no
#: ``first_token_timeout`` of its own (keep-alive comments are not output).
DEFAULT_FIRST_TOKEN_TIMEOUT = 300.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_RATE_LIMIT_COOLDOWN = 10.0
DEFAULT_AUTH_FAILURE_COOLDOWN = 600.0
DEFAULT_CIRCUIT_BREAKER_THRESHOLD = 5
DEFAULT_CIRCUIT_BREAKER_COOLDOWN = 30.0
DEFAULT_RETRY_BACKOFF_BASE = 0.1
DEFAULT_RETRY_BACKOFF_MAX = 2.0
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_COOLDOWN = 3600.0
# The HTTP edge (serve.py): limits on what a client may send and how slowly.
DEFAULT_MAX_URL_BYTES = 16 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
DEFAULT_KEEPALIVE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_OWNER_RECORDS_MAX = 100_000
#: OpenAI keeps stored responses for 30 days.
DEFAULT_OWNER_RECORDS_TTL = 30 * 24 * 3600.0
DEFAULT_KEY_PREFIX = "llm-router:"
REDIS_URL_ENV = "LLM_ROUTER_REDIS_URL"

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRICT = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, strict=True)

# Strict: a number given as a string ("priority": "1") is an error, not silently coerced.
# JSON has lists, not tuples: a list is accepted where the model keeps a tuple.
_LIST_AS_TUPLE = BeforeValidator(lambda value: tuple(value) if isinstance(value, list) else value)
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeSeconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ProviderConfig(BaseModel):
    """One upstream provider: a key at a server, tried in ``priority`` order."""

    model_config = _STRICT

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
    api_key: SecretStr
    priority: Annotated[int, Field(ge=0)] = DEFAULT_PRIORITY
    base_url: str
    timeout: PositiveSeconds = DEFAULT_TIMEOUT
    first_token_timeout: PositiveSeconds | None = None
    max_retries: Annotated[int, Field(ge=0, le=10)] = DEFAULT_MAX_RETRIES
    models: tuple[str, ...] | dict[str, str] | None = None
    organization: str | None = None
    project: str | None = None
    #: The upstream account (OpenAI organization or project, Anthropic workspace) this key
    #: belongs to: it owns the objects created through the key and shares its limits
    #: (SPEC section 10).  Default: the provider's own name.
    account: (
        Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None
    ) = None

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        authority = value.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:
            # Never sent as credentials (the provider key is), and never echoed back here.
            raise ValueError(
                "must not contain user:password@ credentials; put the provider's key in " "api_key"
            )
        return value.rstrip("/")

    @field_validator("models", mode="before")
    @classmethod
    def _models_shape(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            if not value or not all(isinstance(m, str) and m for m in value):
                raise ValueError("must be a non-empty list of model names")
            return tuple(value)
        if isinstance(value, dict):
            if not value or not all(
                isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
            ):
                raise ValueError("must map client model names to non-empty upstream names")
            return value
        raise ValueError("must be a list of model names or a mapping of client to upstream names")

    @property
    def account_name(self) -> str:
        """The account this provider's key belongs to (its own name unless configured)."""
        return self.account or self.name

    def upstream_model(self, model: str) -> str | None:
        """The name to send upstream for the client's ``model``, or None if not served."""
        models = self.models
        if models is None:
            return model
        if isinstance(models, tuple):
            return model if model in models else None
        if model in models:
            return models[model]
        return models.get("*")


class AuthConfig(BaseModel):
    """Router keys: when any is set, every API request must carry one."""

    model_config = _STRICT

    api_keys: Annotated[tuple[SecretStr, ...], _LIST_AS_TUPLE] = ()

    @field_validator("api_keys")
    @classmethod
    def _keys_not_empty(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if any(not key.get_secret_value().strip() for key in value):
            raise ValueError("router keys must not be empty strings")
        return value


class Settings(BaseModel):
    """Router-wide tunables; every field has a named default."""

    model_config = _STRICT

    rate_limit_cooldown: NonNegativeSeconds = DEFAULT_RATE_LIMIT_COOLDOWN
    auth_failure_cooldown: NonNegativeSeconds = DEFAULT_AUTH_FAILURE_COOLDOWN
    circuit_breaker_threshold: Annotated[int, Field(ge=1)] = DEFAULT_CIRCUIT_BREAKER_THRESHOLD
    circuit_breaker_cooldown: NonNegativeSeconds = DEFAULT_CIRCUIT_BREAKER_COOLDOWN
    retry_backoff_base: NonNegativeSeconds = DEFAULT_RETRY_BACKOFF_BASE
    retry_backoff_max: NonNegativeSeconds = DEFAULT_RETRY_BACKOFF_MAX
    max_body_bytes: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY_BYTES
    first_token_timeout: PositiveSeconds = DEFAULT_FIRST_TOKEN_TIMEOUT
    #: Upper bound of any cooldown an upstream asks for (Retry-After).
    max_cooldown: NonNegativeSeconds = DEFAULT_MAX_COOLDOWN
    # The HTTP edge; read when the server starts (a reload does not change them).
    max_url_bytes: Annotated[int, Field(ge=1024)] = DEFAULT_MAX_URL_BYTES
    max_header_bytes: Annotated[int, Field(ge=1024)] = DEFAULT_MAX_HEADER_BYTES
    header_timeout: PositiveSeconds = DEFAULT_HEADER_TIMEOUT
    body_timeout: PositiveSeconds = DEFAULT_BODY_TIMEOUT
    keepalive_timeout: PositiveSeconds = DEFAULT_KEEPALIVE_TIMEOUT
    max_connections: Annotated[int, Field(ge=1)] = DEFAULT_MAX_CONNECTIONS
    shutdown_timeout: NonNegativeSeconds = DEFAULT_SHUTDOWN_TIMEOUT
    owner_records_max: Annotated[int, Field(ge=1)] = DEFAULT_OWNER_RECORDS_MAX
    owner_records_ttl: PositiveSeconds = DEFAULT_OWNER_RECORDS_TTL
    #: Keep a conversation on the provider that served its last turn (among equals).
    session_affinity: bool = True


class StateConfig(BaseModel):
    """Where provider state is shared between processes (SPEC section 11).

    Without ``redis_url`` it stays in the process.  The URL may hold credentials
    (``rediss://user:password@host:6380/0``): it is kept secret and never logged.
    """

    model_config = _STRICT

    redis_url: SecretStr | None = None
    key_prefix: Annotated[str, Field(min_length=1, max_length=64)] = DEFAULT_KEY_PREFIX

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if not re.match(r"^(rediss?://[^/\s]|unix://)", value.get_secret_value().strip()):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return SecretStr(value.get_secret_value().strip())


class RouterConfig(BaseModel):
    """The whole configuration.  Build it with :meth:`from_dict` or :meth:`from_file`."""

    model_config = _STRICT

    openai: Annotated[tuple[ProviderConfig, ...], _LIST_AS_TUPLE] = ()
    anthropic: Annotated[tuple[ProviderConfig, ...], _LIST_AS_TUPLE] = ()
    auth: AuthConfig = AuthConfig()
    settings: Settings = Settings()
    state: StateConfig = StateConfig()

    @model_validator(mode="after")
    def _check_providers(self) -> Self:
        for family in FAMILIES:
            seen: set[str] = set()
            for index, provider in enumerate(self.providers(family)):
                if provider.name in seen:
                    raise ValueError(
                        f"{family}[{index}].name: duplicate provider name {provider.name!r}"
                    )
                seen.add(provider.name)
                if family == "anthropic" and (provider.organization or provider.project):
                    raise ValueError(
                        f"anthropic[{index}]: organization/project are OpenAI-only settings"
                    )
        return self

    def providers(self, family: Family) -> tuple[ProviderConfig, ...]:
        """The providers of one family, in the order they were configured."""
        return self.openai if family == "openai" else self.anthropic

    def secrets(self) -> tuple[str, ...]:
        """Every secret value in this config (provider and router keys), for redaction."""
        keys = [p.api_key.get_secret_value() for f in FAMILIES for p in self.providers(f)]
        keys.extend(k.get_secret_value() for k in self.auth.api_keys)
        if self.state.redis_url is not None:
            keys.extend(_url_credentials(self.state.redis_url.get_secret_value()))
        return tuple(k for k in keys if k)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "config",
        environ: Mapping[str, str] | None = None,
    ) -> RouterConfig:
        """Validate a config mapping; ``${VAR}`` is replaced from ``environ`` (os.environ).

        Router keys in ``LLM_ROUTER_API_KEYS`` (comma-separated) are added to ``auth``.
        """
        env = os.environ if environ is None else environ
        if not isinstance(data, Mapping):
            raise ConfigError(source, None, "the config must be a JSON object")
        prepared = _prepare(data, env, source)
        try:
            config = cls.model_validate(prepared)
        except ValidationError as exc:
            raise _config_error(source, exc) from None
        return config.with_router_keys_from_env(env).with_redis_from_env(env, source)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
    ) -> RouterConfig:
        """Read and validate a JSON config file."""
        source = os.fspath(path)
        try:
            text = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(source, None, "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(source, None, f"cannot be read ({type(exc).__name__})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                source, None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        return cls.from_dict(data, source=source, environ=environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RouterConfig:
        """Providers from OPENAI_API_KEY / OPENAI_BASE_URL / ANTHROPIC_API_KEY / ..._BASE_URL.

        ``LLM_ROUTER_API_KEYS`` (comma-separated) sets router keys.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for family in FAMILIES:
            prefix = family.upper()
            key = env.get(f"{prefix}_API_KEY", "").strip()
            if key:
                provider = {"name": family, "api_key": key}
                base_url = env.get(f"{prefix}_BASE_URL", "").strip()
                if base_url:
                    provider["base_url"] = base_url
                data[family] = [provider]
        return cls.from_dict(data, source="environment", environ=env)

    def with_redis_from_env(
        self, environ: Mapping[str, str] | None = None, source: str = "environment"
    ) -> RouterConfig:
        """Share state through ``LLM_ROUTER_REDIS_URL`` when the config names no Redis."""
        env = os.environ if environ is None else environ
        url = env.get(REDIS_URL_ENV, "").strip()
        if not url or self.state.redis_url is not None:
            return self
        try:
            state = StateConfig(redis_url=SecretStr(url), key_prefix=self.state.key_prefix)
        except ValidationError:
            raise ConfigError(
                source, REDIS_URL_ENV, "must be a redis://, rediss:// or unix:// URL"
            ) from None
        return self.model_copy(update={"state": state})

    def with_router_keys_from_env(self, environ: Mapping[str, str] | None = None) -> RouterConfig:
        """Add router keys from ``LLM_ROUTER_API_KEYS`` (comma-separated), if set."""
        env = os.environ if environ is None else environ
        extra = [k.strip() for k in env.get("LLM_ROUTER_API_KEYS", "").split(",") if k.strip()]
        if not extra:
            return self
        keys = (*self.auth.api_keys, *(SecretStr(k) for k in extra))
        return self.model_copy(update={"auth": AuthConfig(api_keys=keys)})


def _url_credentials(url: str) -> list[str]:
    """The password in a URL, for redaction."""
    password = urlsplit(url).password
    return [unquote(password)] if password else []


def _prepare(data: Mapping[str, Any], env: Mapping[str, str], source: str) -> dict[str, Any]:
    """Substitute ${VAR}, fill per-family defaults (name, base_url) before validation."""
    prepared: dict[str, Any] = _substitute(dict(data), env, source, "")
    for family in FAMILIES:
        providers = prepared.get(family)
        if providers is None:
            continue
        if not isinstance(providers, list):
            raise ConfigError(source, family, "must be a list of providers")
        filled = []
        for index, provider in enumerate(providers):
            if not isinstance(provider, dict):
                raise ConfigError(source, f"{family}[{index}]", "must be an object")
            filled.append(
                {
                    "name": f"{family}-{index}",
                    "base_url": DEFAULT_BASE_URLS[family],
                    **provider,
                }
            )
        prepared[family] = filled
    return prepared


def _substitute(value: Any, env: Mapping[str, str], source: str, where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(source, where, f"environment variable {name} is not set")
            return env[name]

        return _ENV_VAR.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _substitute(v, env, source, f"{where}.{k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, env, source, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _config_error(source: str, exc: ValidationError) -> ConfigError:
    """The first validation problem, as 'field: problem' (never echoing a secret value)."""
    error = exc.errors(include_url=False)[0]
    location = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    ).lstrip(".")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "is required"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    else:
        message = message.replace("Input should be", "must be")
        if error["type"].endswith("_type"):  # strict: say what was given (never its value)
            message += f", not {_json_type(error.get('input'))}"
    if not location and ": " in message:
        location, message = message.split(": ", 1)
    more = exc.error_count() - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(source, location or None, message)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
