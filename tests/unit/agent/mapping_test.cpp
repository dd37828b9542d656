#include "agent/mapping/mapping.h"

#include <boost/test/unit_test.hpp>

#include "shared/match_key.h"

using namespace dingbridge;
using namespace dingbridge::agent;

BOOST_AUTO_TEST_SUITE(mapping)

BOOST_AUTO_TEST_CASE(default_mapping_maps_user_fields) {
    Mapping m = Mapping::load_string("{}");
    dingtalk::UserItem u;
    u.userid = "u1";
    u.name = "  张伟 ";
    u.email = "Zhang.Wei@Example.com";
    u.mobile = "138-0013-8000";
    u.state_code = "86";
    u.hired_date = 1420070400000;  // 2015-01-01T00:00:00Z
    u.active = false;
    OrgUser o = m.map_user(u);
    BOOST_TEST(o.username == "zhang.wei");
    BOOST_TEST(o.display_name == "张伟");
    BOOST_TEST(o.email == "zhang.wei@example.com");
    BOOST_TEST(o.phone == "+8613800138000");
    BOOST_TEST(o.hired_at == "2015-01-01");
    BOOST_TEST(o.active == false);
}

BOOST_AUTO_TEST_CASE(fallbacks_constants_and_custom_fields) {
    Mapping m = Mapping::load_string(
        "user:\n  username: \"{{ email | email_local | default(job_number) | default(\\\"x\\\") | lower }}\"\n"
        "  custom:\n    source: dingtalk\n    place: \"{{ work_place | trim }}\"\n"
        "phone:\n  default_country_code: \"852\"\n");
    dingtalk::UserItem u;
    u.userid = "u2";
    u.job_number = "E100";
    u.mobile = "91234567";
    u.work_place = " 杭州 ";
    OrgUser o = m.map_user(u);
    BOOST_TEST(o.username == "e100");
    BOOST_TEST(o.phone == "+85291234567");
    BOOST_TEST(o.custom.at("source") == "dingtalk");
    BOOST_TEST(o.custom.at("place") == "杭州");
}

BOOST_AUTO_TEST_CASE(lower_and_upper_change_the_case_of_every_letter) {
    // Before: ASCII letters only ("Ünïcödé@X.com" gave "Ünïcödé@x.com"). Now as Python's and
    // JavaScript's lower() and upper(), final sigma and İ included (expected values from Python).
    Mapping m = Mapping::load_string("user:\n  email: \"{{ email | lower }}\"\n  title: \"{{ title | upper }}\"\n");
    dingtalk::UserItem u;
    u.userid = "u3";
    u.email = "Ünïcödé.ΟΔΟΣ.ΣΑΣ.İpek@X.com";
    u.title = "ärzte école straße";
    OrgUser o = m.map_user(u);
    BOOST_TEST(o.email == "ünïcödé.οδοσ.σασ.i\u0307pek@x.com");
    BOOST_TEST(o.title == "ÄRZTE ÉCOLE STRASSE");
    u.email = "ΟΔΟΣ@Χ.com";
    BOOST_TEST(m.map_user(u).email == "οδος@χ.com");
    std::string bad =
        "AB\xff\xfe"
        "CD";  // not UTF-8: those bytes kept
    change_case(bad, false);
    BOOST_TEST(bad ==
               "ab\xff\xfe"
               "cd");
}

BOOST_AUTO_TEST_CASE(list_fields_and_json_members) {
    Mapping m = Mapping::load_string(
        "user:\n  custom:\n    depts: \"{{ dept_id_list | join(\\\";\\\") }}\"\n"
        "    main: \"{{ dept_id_list | first }}\"\n    n: \"{{ dept_id_list | count }}\"\n"
        "    desk: \"{{ extension | json(\\\"工位\\\") }}\"\n"
        "department:\n  custom:\n    managers: \"{{ dept_manager_userid_list | join }}\"\n");
    dingtalk::UserItem u;
    u.userid = "u";
    u.dept_id_list = {7, 3000000007};
    u.extension = R"({"爱好":"旅游","工位":"A-12"})";
    OrgUser o = m.map_user(u);
    BOOST_TEST(o.custom.at("depts") == "7;3000000007");
    BOOST_TEST(o.custom.at("main") == "7");
    BOOST_TEST(o.custom.at("n") == "2");
    BOOST_TEST(o.custom.at("desk") == "A-12");
    u.extension = "not json";
    BOOST_TEST(m.map_user(u).custom.count("desk") == 0u);
    dingtalk::DeptDetail d;
    d.dept_id = 2;
    d.manager_userids = {"a", "b"};
    BOOST_TEST(m.map_department(d).custom.at("managers") == "a,b");
}

BOOST_AUTO_TEST_CASE(e164_keeps_international_numbers) {
    BOOST_TEST(phone_to_e164("+1 (415) 555-0100", "86") == "+14155550100");
    BOOST_TEST(phone_to_e164("", "86") == "");
    BOOST_TEST(phone_to_e164("0044 20 7946 0000", "86") == "+442079460000");
}

BOOST_AUTO_TEST_CASE(dates_use_china_time_by_default) {
    // 2020-03-01 00:00 +08:00 is 2020-02-29 16:00 UTC.
    BOOST_TEST(format_ms_date(1582992000000, 480, "%Y-%m-%d") == "2020-03-01");
    BOOST_TEST(format_ms_date(1582992000000, 0, "%Y-%m-%d") == "2020-02-29");
    BOOST_TEST(format_ms_date(0, 480, "%Y-%m-%d") == "");
}

void expect_error(const std::string& yaml, const std::string& needle, int line, int column) {
    try {
        Mapping::load_string(yaml, "m.yaml");
        BOOST_FAIL("no error for: " + yaml);
    } catch (const ConfigError& e) {
        BOOST_TEST_INFO(e.what());
        BOOST_TEST(std::string(e.what()).find(needle) != std::string::npos);
        BOOST_TEST(e.line() == line);
        BOOST_TEST(e.column() == column);
    }
}

BOOST_AUTO_TEST_CASE(unknown_field_filter_and_type_errors_point_at_the_spot) {
    expect_error("user:\n  title: \"{{ titel }}\"\n", "unknown source field 'titel'", 2, 14);
    expect_error("user:\n  title: \"{{ title | shout }}\"\n", "unknown filter 'shout'", 2, 22);
    expect_error("user:\n  hired_at: \"{{ hired_date | lower }}\"\n", "needs a string value", 2, 30);
    expect_error("user:\n  active: \"{{ name }}\"\n", "must be a boolean", 2, 12);
    expect_error("department:\n  order: \"{{ name }}\"\n", "must be an integer", 2, 11);
    expect_error("user:\n  nickname: \"{{ name }}\"\n", "nickname", 2, 3);
    expect_error("removed_users:\n  action: archive\n", "disable or delete", 2, 11);
    expect_error("user:\n  title: \"{{ dept_id_list }}\"\n", "a list field needs join", 2, 11);
    expect_error("user:\n  title: \"{{ name | join }}\"\n", "needs a list value", 2, 21);
}

BOOST_AUTO_TEST_CASE(skip_rules_and_subtrees) {
    Mapping m = Mapping::load_string(
        "sync:\n  exclude_departments: [5]\n  skip_users:\n    - field: exclusive_account_type\n      equals: sso\n");
    dingtalk::UserItem u;
    u.exclusive_account_type = "sso";
    BOOST_TEST(m.skip_user(u));
    u.exclusive_account_type = "dingtalk";
    BOOST_TEST(!m.skip_user(u));
    BOOST_TEST(m.exclude_departments().count(5) == 1u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(reads_user_field_sees_templates_fallbacks_and_skip_rules) {
    // Admin events are fetched only when something reads `admin`.
    BOOST_TEST(!Mapping::load_string("{}").reads_user_field("admin"));
    BOOST_TEST(Mapping::load_string("{}").reads_user_field("job_number"));  // username's fallback
    BOOST_TEST(Mapping::load_string("user:\n  custom:\n    is_admin: \"{{ admin }}\"\n").reads_user_field("admin"));
    BOOST_TEST(Mapping::load_string("user:\n  active: \"{{ active | default(admin) }}\"\n").reads_user_field("admin"));
    BOOST_TEST(Mapping::load_string("sync:\n  skip_users:\n    - field: admin\n      equals: \"true\"\n")
                   .reads_user_field("admin"));
    BOOST_TEST(!Mapping::load_string("{}").reads_user_field("no_such_field"));
}
