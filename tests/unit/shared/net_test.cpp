#include "shared/net.h"

#include <netinet/in.h>

#include <boost/test/unit_test.hpp>

using namespace dingbridge;

BOOST_AUTO_TEST_SUITE(net)

BOOST_AUTO_TEST_CASE(parses_canonical_ipv4_and_ipv6) {
    BOOST_TEST(IpAddress::parse("127.0.0.1")->to_string() == "127.0.0.1");
    BOOST_TEST(IpAddress::parse("0.0.0.0")->is_v4());
    BOOST_TEST(IpAddress::parse("::1")->to_string() == "::1");
    BOOST_TEST(IpAddress::parse("2001:db8::1")->to_string() == "2001:db8::1");
    // IPv4-mapped IPv6 is the same address as its IPv4 form.
    BOOST_TEST((*IpAddress::parse("::ffff:127.0.0.1") == *IpAddress::parse("127.0.0.1")));
    BOOST_TEST((*IpAddress::parse("::ffff:7f00:1") == *IpAddress::parse("127.0.0.1")));
}

// One source for the throttles and connection caps: an IPv4 address, or an IPv6 /64.
BOOST_AUTO_TEST_CASE(a_source_is_an_ipv4_address_or_an_ipv6_64) {
    auto p = [](const char* s) { return *IpAddress::parse(s); };
    BOOST_TEST(p("192.0.2.7").source().to_string() == "192.0.2.7");
    BOOST_TEST(p("::ffff:192.0.2.7").source().to_string() == "192.0.2.7");
    BOOST_TEST(p("2001:db8:1:2:aaaa:bbbb:cccc:dddd").source().to_string() == "2001:db8:1:2::");
    BOOST_TEST((p("2001:db8:1:2::1").source() == p("2001:db8:1:2:ffff::9").source()));
    BOOST_TEST((p("2001:db8:1:2::1").source() != p("2001:db8:1:3::1").source()));
}

BOOST_AUTO_TEST_CASE(refuses_alternative_ipv4_spellings) {
    for (const char* s :
         {"2130706433", "0x7f.1", "0x7f000001", "127.1", "127.0.1", "0177.0.0.1", "127.000.000.001", "127.0.0.1.",
          "1.2.3.256", " 127.0.0.1", "127.0.0.1 ", "", "fe80::1%eth0", "[::1]", "::ffff:127.1"}) {
        BOOST_TEST(!IpAddress::parse(s), s);
    }
}

BOOST_AUTO_TEST_CASE(cidr_matches_both_families) {
    auto ten = *Cidr::parse("10.0.0.0/8");
    BOOST_TEST(ten.contains(*IpAddress::parse("10.255.1.2")));
    BOOST_TEST(!ten.contains(*IpAddress::parse("11.0.0.1")));
    BOOST_TEST(ten.contains(*IpAddress::parse("::ffff:10.1.2.3")));
    auto ula = *Cidr::parse("fc00::/7");
    BOOST_TEST(ula.contains(*IpAddress::parse("fd12:3456::1")));
    BOOST_TEST(!ula.contains(*IpAddress::parse("fe80::1")));
    auto any4 = *Cidr::parse("0.0.0.0/0");
    BOOST_TEST(any4.contains(*IpAddress::parse("8.8.8.8")));
    BOOST_TEST(!any4.contains(*IpAddress::parse("2001:db8::1")));
    auto any6 = *Cidr::parse("::/0");
    BOOST_TEST(any6.contains(*IpAddress::parse("2001:db8::1")));
    // Before: ::/0 (any IPv6 client) held every IPv4 address too, kept as ::ffff:a.b.c.d.
    BOOST_TEST(!any6.contains(*IpAddress::parse("127.0.0.1")));
    BOOST_TEST(!Cidr::parse("::/80")->contains(*IpAddress::parse("::ffff:10.1.2.3")));
    auto host = *Cidr::parse("192.168.1.7");
    BOOST_TEST(host.contains(*IpAddress::parse("192.168.1.7")));
    BOOST_TEST(!host.contains(*IpAddress::parse("192.168.1.8")));
    BOOST_TEST(Cidr::parse("172.16.0.0/12")->to_string() == "172.16.0.0/12");
}

BOOST_AUTO_TEST_CASE(cidr_overlap_is_one_network_holding_the_other) {
    auto overlaps = [](const char* a, const char* b) {
        const bool ab = Cidr::parse(a)->overlaps(*Cidr::parse(b));
        BOOST_TEST(ab == Cidr::parse(b)->overlaps(*Cidr::parse(a)));
        return ab;
    };
    BOOST_TEST(overlaps("127.0.0.0/8", "127.0.0.0/8"));
    BOOST_TEST(overlaps("10.0.0.0/8", "10.1.0.0/16"));
    BOOST_TEST(overlaps("0.0.0.0/0", "192.168.5.0/24"));
    BOOST_TEST(!overlaps("10.0.0.0/8", "11.0.0.0/8"));
    BOOST_TEST(!overlaps("127.8.0.0/13", "127.2.0.0/16"));
    BOOST_TEST(!overlaps("127.0.0.0/8", "::1/128"));
    BOOST_TEST(!overlaps("127.0.0.0/8", "::/0"));
    BOOST_TEST(overlaps("::/0", "2001:db8::/32"));
    BOOST_TEST(!overlaps("fc00::/7", "fe80::/10"));
}

BOOST_AUTO_TEST_CASE(cidr_refuses_bad_input) {
    std::string error;
    BOOST_TEST(!Cidr::parse("10.0.0.1/8", &error));
    BOOST_TEST(error.find("bits set") != std::string::npos);
    BOOST_TEST(!Cidr::parse("10.0.0.0/33"));
    BOOST_TEST(!Cidr::parse("10.0.0.0/"));
    BOOST_TEST(!Cidr::parse("10.0.0.0/x"));
    BOOST_TEST(!Cidr::parse("::/129"));
    BOOST_TEST(!Cidr::parse("example.com/8"));
}

BOOST_AUTO_TEST_CASE(extracts_ipv4_embedded_in_transition_forms) {
    BOOST_TEST(IpAddress::parse("64:ff9b::7f00:1")->embedded_v4()->to_string() == "127.0.0.1");
    BOOST_TEST(IpAddress::parse("::127.0.0.1")->embedded_v4()->to_string() == "127.0.0.1");
    BOOST_TEST(IpAddress::parse("::ffff:0:127.0.0.1")->embedded_v4()->to_string() == "127.0.0.1");
    BOOST_TEST(IpAddress::parse("::ffff:0:a9fe:a9fe")->embedded_v4()->to_string() == "169.254.169.254");
    BOOST_TEST(IpAddress::parse("2002:a9fe:a9fe::1")->embedded_v4()->to_string() == "169.254.169.254");
    BOOST_TEST(!IpAddress::parse("2001:db8::1")->embedded_v4());
    BOOST_TEST(!IpAddress::parse("127.0.0.1")->embedded_v4());
}

BOOST_AUTO_TEST_CASE(splits_host_and_port) {
    auto a = split_host_port("example.com:443");
    BOOST_TEST(a->host == "example.com");
    BOOST_TEST(a->port == 443);
    auto b = split_host_port("[::1]:8443");
    BOOST_TEST(b->host == "::1");
    BOOST_TEST(b->port == 8443);
    for (const char* s : {"example.com", "example.com:", "example.com:0", "example.com:65536", "::1:443", "[::1]443",
                          "[127.0.0.1]:80", ":443", "host:44a"}) {
        BOOST_TEST(!split_host_port(s), s);
    }
}

BOOST_AUTO_TEST_CASE(hostnames_are_rfc1123_names_not_numbers) {
    BOOST_TEST(is_valid_hostname("oapi.dingtalk.com"));
    BOOST_TEST(is_valid_hostname("localhost"));
    BOOST_TEST(is_valid_hostname("a-b.c_d.example"));
    for (const char* s : {"2130706433", "0x7f.1", "0x7f000001", "127.1", "1.2.3.4", "-a.com", "a-.com", "a..b", ".a",
                          "a b", "a/b", "exa\xc3\xa9mple.com", "a@b"}) {
        BOOST_TEST(!is_valid_hostname(s), s);
    }
    BOOST_TEST(!is_valid_hostname(std::string(64, 'a') + ".com"));
}

BOOST_AUTO_TEST_CASE(socket_addresses_round_trip_both_families) {
    // IPv4 (and IPv4-mapped) become AF_INET, so a v4 listener or egress bind works on a v4 socket.
    for (const char* text : {"127.0.0.1", "::ffff:10.1.2.3", "::1", "2001:db8::7"}) {
        const IpAddress ip = *IpAddress::parse(text);
        const SocketAddress sa = SocketAddress::of(ip, 8443);
        BOOST_TEST(sa.family() == (ip.is_v4() ? AF_INET : AF_INET6), text);
        BOOST_TEST(sa.length == (ip.is_v4() ? sizeof(sockaddr_in) : sizeof(sockaddr_in6)), text);
        BOOST_TEST(port_of(sa.get()) == 8443, text);
        BOOST_TEST((*IpAddress::from_sockaddr(sa.get()) == ip), text);
    }
    BOOST_TEST(port_of(nullptr) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
