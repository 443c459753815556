import pytest

from chat.codespaces import forwarded_address
from tests.helpers import ServerProgram

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


def test_the_commands_to_make_the_port_public_and_check_it_name_the_codespace_and_port():
    address = forwarded_address(8080, CODESPACE)
    assert address.make_public_command == "gh codespace ports visibility 8080:public -c fluffy-robot-5g9x7qv6"
    assert address.check_command == "gh codespace ports -c fluffy-robot-5g9x7qv6"


def test_a_server_in_a_codespace_says_at_start_where_others_join_and_how_to_make_its_port_public():
    server = ServerProgram(0, "--no-qr", env=CODESPACE)
    try:
        host = f"fluffy-robot-5g9x7qv6-{server.port}.app.github.dev"
        server.expect(rf"🌍 From other devices, once port {server.port} is Public in the Ports panel:$")
        server.expect(rf"   in a browser: https://{host}/$")
        server.expect(rf"   in a terminal: python client\.py wss://{host}$")
        server.expect(rf"🔓 Ports start Private\. Make it Public in the Ports panel \(right-click {server.port} ›")
        server.expect(rf"   or run: gh codespace ports visibility {server.port}:public -c fluffy-robot-5g9x7qv6$")
        server.expect(r"   and check with: gh codespace ports -c fluffy-robot-5g9x7qv6$")
    finally:
        server.terminate()
        assert server.wait() == 0
