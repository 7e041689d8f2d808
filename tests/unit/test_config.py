"""RouterConfig: every provider field, defaults, ${VAR}, strictness, one clear error each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llm_api_router.config import (
    DEFAULT_BASE_URLS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEFAULT_TIMEOUT,
    RouterConfig,
)
from llm_api_router.errors import ConfigError


def test_minimal_provider_gets_named_defaults() -> None:
    config = RouterConfig.from_dict(
        {"openai": [{"api_key": "sk-1"}], "anthropic": [{"api_key": "a"}]}
    )
    openai = config.openai[0]
    assert openai.name == "openai-0"
    assert openai.priority == DEFAULT_PRIORITY
    assert openai.timeout == DEFAULT_TIMEOUT
    assert openai.max_retries == DEFAULT_MAX_RETRIES
    assert openai.base_url == DEFAULT_BASE_URLS["openai"]
    assert config.anthropic[0].base_url == DEFAULT_BASE_URLS["anthropic"]
    assert config.anthropic[0].name == "anthropic-0"
    assert openai.models is None
    assert openai.upstream_model("anything") == "anything"


def test_original_readme_example_loads() -> None:
    data = {
        "openai": [
            {
                "api_key": "sk-1",
                "priority": 1,
                "base_url": "https://api.openai.com/v1",
                "timeout": 30,
                "max_retries": 3,
            },
            {
                "api_key": "sk-2",
                "priority": 2,
                "base_url": "https://api.openai.com/v1",
                "timeout": 30,
                "max_retries": 3,
            },
        ],
        "anthropic": [
            {
                "api_key": "sk-ant-1",
                "priority": 1,
                "base_url": "https://api.anthropic.com",
                "timeout": 30,
                "max_retries": 3,
            }
        ],
    }
    config = RouterConfig.from_dict(data)
    assert [p.name for p in config.openai] == ["openai-0", "openai-1"]
    assert [p.priority for p in config.openai] == [1, 2]


def test_every_field() -> None:
    config = RouterConfig.from_dict(
        {
            "openai": [
                {
                    "name": "primary",
                    "api_key": "sk-x",
                    "priority": 0,
                    "base_url": "http://127.0.0.1:9/v1/",
                    "timeout": 2.5,
                    "first_token_timeout": 1,
                    "max_retries": 0,
                    "models": {"gpt-4o": "gpt-4o-2024-08-06", "*": "gpt-4o-mini"},
                    "organization": "org-1",
                    "project": "proj-1",
                }
            ],
            "auth": {"api_keys": ["router-key"]},
            "settings": {"rate_limit_cooldown": 3, "circuit_breaker_threshold": 2},
        }
    )
    provider = config.openai[0]
    assert provider.base_url == "http://127.0.0.1:9/v1"  # trailing slash dropped
    assert provider.first_token_timeout == 1
    assert provider.upstream_model("gpt-4o") == "gpt-4o-2024-08-06"
    assert provider.upstream_model("other") == "gpt-4o-mini"
    assert config.auth.api_keys[0].get_secret_value() == "router-key"
    assert config.settings.rate_limit_cooldown == 3
    assert config.settings.circuit_breaker_threshold == 2


def test_models_list_serves_only_named_models() -> None:
    config = RouterConfig.from_dict({"openai": [{"api_key": "k", "models": ["a", "b"]}]})
    provider = config.openai[0]
    assert provider.upstream_model("a") == "a"
    assert provider.upstream_model("c") is None


def test_models_mapping_without_wildcard_skips_other_models() -> None:
    config = RouterConfig.from_dict({"openai": [{"api_key": "k", "models": {"a": "b"}}]})
    assert config.openai[0].upstream_model("a") == "b"
    assert config.openai[0].upstream_model("z") is None


def test_env_var_substitution() -> None:
    config = RouterConfig.from_dict(
        {"openai": [{"api_key": "${MY_KEY}", "base_url": "http://${HOST}:1/v1"}]},
        environ={"MY_KEY": "sk-from-env", "HOST": "127.0.0.1"},
    )
    assert config.openai[0].api_key.get_secret_value() == "sk-from-env"
    assert config.openai[0].base_url == "http://127.0.0.1:1/v1"


def test_secrets_never_in_repr() -> None:
    config = RouterConfig.from_dict(
        {"openai": [{"api_key": "sk-sentinel-123"}], "auth": {"api_keys": ["rk-sentinel-456"]}}
    )
    text = repr(config) + str(config) + repr(config.openai[0]) + config.model_dump_json()
    assert "sk-sentinel-123" not in text
    assert "rk-sentinel-456" not in text
    assert set(config.secrets()) == {"sk-sentinel-123", "rk-sentinel-456"}


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"openai": [{}]}, "openai[0].api_key", "is required"),
        ({"openai": [{"api_key": ""}]}, "openai[0].api_key", "must not be empty"),
        ({"openai": [{"api_key": "k", "timeout": -1}]}, "openai[0].timeout", "greater than 0"),
        ({"openai": [{"api_key": "k", "timeout": "soon"}]}, "openai[0].timeout", "number"),
        (
            {"openai": [{"api_key": "k", "max_retries": -1}]},
            "openai[0].max_retries",
            "greater than or equal to 0",
        ),
        ({"openai": [{"api_key": "k", "priority": "high"}]}, "openai[0].priority", "integer"),
        ({"openai": [{"api_key": "k", "base_url": "ftp://x"}]}, "openai[0].base_url", "http"),
        ({"openai": [{"api_key": "k", "colour": "red"}]}, "openai[0].colour", "unknown key"),
        ({"openai": [{"api_key": "k", "models": []}]}, "openai[0].models", "non-empty"),
        ({"openai": [{"api_key": "k", "models": 3}]}, "openai[0].models", "list of model names"),
        ({"openai": {"api_key": "k"}}, "openai", "must be a list"),
        ({"openai": ["k"]}, "openai[0]", "must be an object"),
        ({"mistral": []}, "mistral", "unknown key"),
        (
            {"openai": [{"api_key": "${NOPE_NOT_SET}"}]},
            "openai[0].api_key",
            "NOPE_NOT_SET is not set",
        ),
        (
            {"openai": [{"api_key": "a", "name": "x"}, {"api_key": "b", "name": "x"}]},
            "openai[1].name",
            "duplicate",
        ),
        (
            {"anthropic": [{"api_key": "a", "organization": "o"}]},
            "anthropic[0]",
            "OpenAI-only",
        ),
        ({"auth": {"api_keys": [""]}}, "auth.api_keys", "must not be empty"),
        ({"settings": {"max_body_bytes": 0}}, "settings.max_body_bytes", "greater than 0"),
    ],
)
def test_each_config_error_names_field_and_problem(
    data: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict(data, source="my.json", environ={})
    error = caught.value
    assert error.source == "my.json"
    assert error.field == field
    assert problem in error.problem
    assert str(error).startswith(f"my.json: {field}: ")
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    "base_url",
    ["https://user:pass@api.example.com/v1", "http://only-user@127.0.0.1:9000", "https://:p@h"],
)
def test_base_url_with_credentials_is_rejected_without_echoing_them(base_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict({"openai": [{"api_key": "k", "base_url": base_url}]}, environ={})
    assert caught.value.field == "openai[0].base_url"
    assert "user:password@" in caught.value.problem
    assert "api_key" in caught.value.problem
    assert "pass@" not in str(caught.value) and "only-user" not in str(caught.value)


def test_at_sign_in_a_base_url_path_is_fine() -> None:
    config = RouterConfig.from_dict(
        {"openai": [{"api_key": "k", "base_url": "https://h.example/v1/@team"}]}, environ={}
    )
    assert config.openai[0].base_url == "https://h.example/v1/@team"


def test_config_error_never_echoes_a_key() -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict({"openai": [{"api_key": "sk-secret-value", "timeout": -5}]})
    assert "sk-secret-value" not in str(caught.value)


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"openai": [{"api_key": "k", "name": "n"}]}))
    assert RouterConfig.from_file(path).openai[0].name == "n"


def test_from_file_bad_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"openai": [\n  {"api_key": "k",}\n]}')
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_file(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "invalid JSON at line 2" in message


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        RouterConfig.from_file(tmp_path / "absent.json")


def test_top_level_must_be_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[]")
    with pytest.raises(ConfigError, match="must be a JSON object"):
        RouterConfig.from_file(path)


def test_from_env_builds_providers() -> None:
    config = RouterConfig.from_env(
        {
            "OPENAI_API_KEY": "sk-o",
            "OPENAI_BASE_URL": "http://127.0.0.1:1/v1",
            "ANTHROPIC_API_KEY": "sk-a",
        }
    )
    assert config.openai[0].name == "openai"
    assert config.openai[0].base_url == "http://127.0.0.1:1/v1"
    assert config.anthropic[0].base_url == DEFAULT_BASE_URLS["anthropic"]


def test_from_env_without_keys_has_no_providers() -> None:
    config = RouterConfig.from_env({})
    assert config.openai == () and config.anthropic == ()


def test_router_keys_from_env_are_added() -> None:
    config = RouterConfig.from_dict({"auth": {"api_keys": ["a"]}})
    merged = config.with_router_keys_from_env({"LLM_ROUTER_API_KEYS": "b, c ,"})
    assert [k.get_secret_value() for k in merged.auth.api_keys] == ["a", "b", "c"]
    assert config.with_router_keys_from_env({}) is config


def test_config_is_frozen() -> None:
    config = RouterConfig.from_dict({"openai": [{"api_key": "k"}]})
    with pytest.raises(ValueError, match="frozen"):
        config.openai[0].priority = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "where", "given"),
    [
        ({"openai": [{"api_key": "k", "priority": "1"}]}, "openai[0].priority", "a string"),
        ({"openai": [{"api_key": "k", "timeout": "30"}]}, "openai[0].timeout", "a string"),
        ({"openai": [{"api_key": "k", "priority": True}]}, "openai[0].priority", "a boolean"),
        ({"openai": [{"api_key": "k", "max_retries": 2.5}]}, "openai[0].max_retries", "a number"),
        ({"settings": {"max_body_bytes": "1024"}}, "settings.max_body_bytes", "a string"),
        ({"anthropic": [{"api_key": 123}]}, "anthropic[0].api_key", "a number"),
    ],
)
def test_values_of_the_wrong_type_are_not_coerced(
    data: dict[str, Any], where: str, given: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        RouterConfig.from_dict(data, environ={})
    assert f"{where}: must be a valid" in str(caught.value)
    assert str(caught.value).endswith(f"not {given}")


def test_strictness_keeps_lists_ints_for_floats_and_tuples_working() -> None:
    from_json = RouterConfig.from_dict(
        {"openai": [{"api_key": "k", "timeout": 5}], "auth": {"api_keys": ["r"]}}, environ={}
    )
    from_python = RouterConfig.from_dict(
        {"openai": [{"api_key": "k", "timeout": 5.0}], "auth": {"api_keys": ("r",)}}, environ={}
    )
    assert from_json == from_python
    assert from_json.openai[0].timeout == 5.0
