"""Visitor hashes: one per network, browser and day, never revealing the IP; and the visitor cookie."""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.tracking.visitor import (
    COOKIE,
    COOKIE_ID_LENGTH,
    INVALID,
    cookie_id,
    daily_salt,
    new_cookie_id,
    set_cookie,
    truncate_ip,
    visitor_hash,
)

KEY = b"visitor-test-key-0123456789abcdef"
DAY = date(2026, 3, 14)
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


# --- truncate_ip --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("203.0.113.0", "203.0.113.0/24"),
        ("203.0.113.255", "203.0.113.0/24"),
        ("0.0.0.9", "0.0.0.0/24"),
        (" 10.1.2.3 ", "10.1.2.0/24"),
        ("::ffff:203.0.113.77", "203.0.113.0/24"),
        ("::FFFF:cb00:714d", "203.0.113.0/24"),
        ("2001:db8:1234:5678:9abc::1", "2001:db8:1234::/48"),
        ("2001:DB8:1234:ffff:ffff:ffff:ffff:ffff", "2001:db8:1234::/48"),
        ("2001:db8::", "2001:db8::/48"),
        ("::1", "::/48"),
        ("fe80::1%eth0", "fe80::/48"),
    ],
)
def test_addresses_are_cut_to_their_network(ip, network):
    assert truncate_ip(ip) == network


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "garbage",
        "1.2.3",
        "1.2.3.4.5",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3.-4",
        "1.2.3.4/24",
        "１.2.3.4",
        "1.2.3.٤",
        "2001:db8::g",
        ":::",
        "1" * 100 + ":",
        "unknown",
        None,
        42,
    ],
)
def test_anything_not_an_ip_is_invalid(ip):
    assert truncate_ip(ip) == INVALID


@given(st.ip_addresses(v=4))
def test_every_ipv4_address_keeps_exactly_its_first_three_octets(address):
    network = truncate_ip(str(address))
    assert network == str(ipaddress.ip_network(f"{address}/24", strict=False))
    assert str(address).rsplit(".", 1)[0] + ".0/24" == network


@given(st.ip_addresses(v=6))
def test_every_ipv6_address_keeps_exactly_its_first_48_bits(address):
    network = truncate_ip(str(address))
    if address.ipv4_mapped is not None:
        assert network == str(ipaddress.ip_network(f"{address.ipv4_mapped}/24", strict=False))
    else:
        assert network == str(ipaddress.ip_network(f"{address}/48", strict=False))


# --- daily_salt ---------------------------------------------------------------------------------------


def test_the_salt_is_the_same_for_a_day_and_changes_the_next():
    assert daily_salt(KEY, DAY) == daily_salt(bytes(KEY), date(2026, 3, 14))
    assert daily_salt(KEY, DAY) != daily_salt(KEY, date(2026, 3, 15))
    assert daily_salt(KEY, DAY) != daily_salt(b"another-key-0123456789abcdefghij", DAY)
    assert len(daily_salt(KEY, DAY)) == 32


def test_the_salt_is_not_the_date_or_the_key():
    salt = daily_salt(KEY, DAY)
    assert KEY not in salt
    assert b"2026" not in salt


def test_the_salt_wants_a_date_not_a_datetime():
    with pytest.raises(TypeError):
        daily_salt(KEY, datetime(2026, 3, 14, 12, 0, tzinfo=UTC))


# --- visitor_hash -------------------------------------------------------------------------------------


def test_a_visitor_hash_is_32_hex_characters():
    assert re.fullmatch(r"[0-9a-f]{32}", visitor_hash(KEY, "203.0.113.77", UA, DAY))


def test_addresses_in_one_ipv4_slash_24_share_a_hash():
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) == visitor_hash(KEY, "203.0.113.5", UA, DAY)
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) == visitor_hash(KEY, "::ffff:203.0.113.9", UA, DAY)


def test_another_ipv4_slash_24_gets_another_hash():
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) != visitor_hash(KEY, "203.0.114.77", UA, DAY)


def test_addresses_in_one_ipv6_slash_48_share_a_hash_and_others_do_not():
    one = visitor_hash(KEY, "2001:db8:1234:1::1", UA, DAY)
    assert one == visitor_hash(KEY, "2001:db8:1234:ffff::2", UA, DAY)
    assert one != visitor_hash(KEY, "2001:db8:1235:1::1", UA, DAY)


def test_another_day_gives_another_hash():
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) != visitor_hash(KEY, "203.0.113.77", UA, date(2026, 3, 15))


def test_another_user_agent_gives_another_hash():
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) != visitor_hash(KEY, "203.0.113.77", UA + " Edg/124.0", DAY)
    assert visitor_hash(KEY, "203.0.113.77", "", DAY) != visitor_hash(KEY, "203.0.113.77", " ", DAY)


def test_another_key_gives_another_hash():
    other = b"another-key-0123456789abcdefghij"
    assert visitor_hash(KEY, "203.0.113.77", UA, DAY) != visitor_hash(other, "203.0.113.77", UA, DAY)


def test_unreadable_addresses_fall_together_by_user_agent():
    assert visitor_hash(KEY, "garbage", UA, DAY) == visitor_hash(KEY, "", UA, DAY)
    assert visitor_hash(KEY, "garbage", UA, DAY) != visitor_hash(KEY, "garbage", "curl/8.5.0", DAY)


def test_a_user_agent_with_lone_surrogates_or_no_user_agent_still_hashes():
    assert len(visitor_hash(KEY, "203.0.113.77", "bad \udcff agent", DAY)) == 32
    assert len(visitor_hash(KEY, "203.0.113.77", None, DAY)) == 32


@given(st.ip_addresses(), st.text(max_size=50))
def test_the_ip_never_appears_in_the_hash(address, user_agent):
    digest = visitor_hash(KEY, str(address), user_agent, DAY)
    assert str(address) not in digest
    assert address.packed.hex() not in digest
    assert re.fullmatch(r"[0-9a-f]{32}", digest)


# --- the visitor cookie ---------------------------------------------------------------------------


def test_a_new_cookie_id_is_read_back_from_the_cookie_header_among_others():
    visitor_id = new_cookie_id()
    assert len(visitor_id) == COOKIE_ID_LENGTH
    assert cookie_id(f"{COOKIE}={visitor_id}".encode()) == visitor_id
    assert cookie_id(f"session=abc; {COOKIE}={visitor_id}; csrf=x".encode()) == visitor_id
    assert cookie_id(f"session=abc;{COOKIE}={visitor_id}".encode()) == visitor_id
    assert new_cookie_id() != visitor_id


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"session=abc",
        b"affnet_v=",
        b"affnet_v=short",
        b"affnet_v=AAAAAAAAAAAAAAAAA",  # 17 characters: not an id affnet issues
        b"affnet_v=AAAAAAAA AAAAAAA",
        b"affnet_v=AAAAAAAA/AAAAAAA",
        b"xaffnet_v=AAAAAAAAAAAAAAAA",  # another cookie whose name ends like ours
        "affnet_v=AAAAAAAAAAAAAAé".encode(),
    ],
)
def test_a_cookie_header_without_an_id_affnet_could_have_issued_has_none(header):
    assert cookie_id(header) is None


def test_the_cookie_is_for_the_click_redirect_only_and_hidden_from_scripts():
    text = set_cookie("AAAAAAAAAAAAAAAA", secure=True, max_age=3600).decode()
    assert text == "affnet_v=AAAAAAAAAAAAAAAA; Max-Age=3600; Path=/c/; HttpOnly; SameSite=Lax; Secure"
    assert "Secure" not in set_cookie("AAAAAAAAAAAAAAAA", secure=False, max_age=3600).decode()


def test_cookie_ids_are_distinct_across_the_random_pools_refills_and_read_back():
    ids = [new_cookie_id() for _ in range(3000)]  # about three pools of 1,024
    assert len(set(ids)) == 3000
    assert all(cookie_id(f"{COOKIE}={i}".encode()) == i for i in ids)


def test_a_forked_process_draws_its_own_cookie_ids():
    new_cookie_id()  # the parent has a pool with ids left in it
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(write, new_cookie_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 64).decode()
    os.close(read)
    assert len(childs) == COOKIE_ID_LENGTH and childs != new_cookie_id()
