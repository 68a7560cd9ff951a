"""Which socket options a listener sets on each OS, and which ports the API tries when its port is taken."""

from __future__ import annotations

from agent.netbind import SocketOption, candidate_ports, listen_options


def test_windows_listeners_are_exclusive_and_never_reuse_the_address():
    options = listen_options("nt")
    assert SocketOption("SOL_SOCKET", "SO_EXCLUSIVEADDRUSE", 1) in options
    assert all(option.name != "SO_REUSEADDR" for option in options)


def test_posix_listeners_rebind_after_a_restart_but_never_share_a_live_port():
    options = listen_options("posix")
    assert [option.name for option in options] == ["SO_REUSEADDR"]
    assert all(option.name != "SO_REUSEPORT" for option in options)


def test_the_configured_port_comes_first_then_the_next_ones_skipping_the_peer_port():
    assert candidate_ports(7463, 3, skip=(7464,)) == [7463, 7465, 7466, 7467]


def test_no_search_means_the_configured_port_only():
    assert candidate_ports(7463, 0, skip=(7464,)) == [7463]


def test_an_os_chosen_port_is_never_searched():
    assert candidate_ports(0, 32) == [0]


def test_the_search_stops_at_the_last_port():
    assert candidate_ports(65534, 10) == [65534, 65535]
