import pytest

from chat.codespaces import forwarded_address

CODESPACE = {
    "CODESPACE_NAME": "fluffy-robot-5g9x7qv6",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}


def test_in_a_codespace_the_page_and_the_client_command_use_the_forwarded_host():
    address = forwarded_address(8080, CODESPACE)
    assert address.host == "fluffy-robot-5g9x7qv6-8080.app.github.dev"
    assert address.page_url == "https://fluffy-robot-5g9x7qv6-8080.app.github.dev/"
    assert address.client_command == "python client.py wss://fluffy-robot-5g9x7qv6-8080.app.github.dev"


def test_the_port_is_part_of_the_host():
    assert forwarded_address(9000, CODESPACE).host == "fluffy-robot-5g9x7qv6-9000.app.github.dev"


def test_another_forwarding_domain_is_used_as_given():
    environ = dict(CODESPACE, GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN="preview.app.github.dev")
    assert forwarded_address(8080, environ).host == "fluffy-robot-5g9x7qv6-8080.preview.app.github.dev"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"CODESPACE_NAME": "fluffy-robot-5g9x7qv6"},
        {"GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"},
        {"CODESPACE_NAME": " ", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"},
    ],
)
def test_outside_a_codespace_there_is_no_forwarded_address(environ):
    assert forwarded_address(8080, environ) is None


def test_a_port_the_system_picks_has_no_forwarded_address_until_it_is_known():
    assert forwarded_address(0, CODESPACE) is None


def test_the_process_environment_is_read_by_default(monkeypatch):
    for name, value in CODESPACE.items():
        monkeypatch.setenv(name, value)
    assert forwarded_address(8080).host == "fluffy-robot-5g9x7qv6-8080.app.github.dev"
    monkeypatch.delenv("CODESPACE_NAME")
    assert forwarded_address(8080) is None
