#include "agent/dingtalk/packed_item.h"

#include <boost/test/unit_test.hpp>
#include <limits>
#include <string>

using namespace dingbridge::agent::dingtalk;
using namespace std::string_literals;

namespace {

bool same(const UserItem& a, const UserItem& b) {
    auto t = [](const UserItem& u) {
        return std::tie(u.userid, u.unionid, u.name, u.avatar, u.state_code, u.mobile, u.telephone, u.job_number,
                        u.title, u.email, u.org_email, u.work_place, u.remark, u.extension, u.exclusive_account_type,
                        u.login_id, u.dept_id_list, u.dept_order, u.leader, u.hired_date, u.has_hired_date, u.active,
                        u.admin, u.boss, u.hide_mobile, u.exclusive_account);
    };
    return t(a) == t(b);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(packed_item)

// Every field comes back as it was: long and short text, UTF-8, embedded NULs, negative and
// extreme integers, an empty and a long department list, each flag set alone.
BOOST_AUTO_TEST_CASE(unpack_gives_back_the_item) {
    UserItem u;
    u.userid = "184900000025430423";
    u.unionid = "iPiSfGfCiSmbOcbeDTYfeEgQiEiE";
    u.name = "张三";
    u.avatar = "https://static.example.com/avatar/" + std::string(300, 'a') + ".png";
    u.state_code = "+86";
    u.mobile = "13800001234";
    u.job_number = "A-001";
    u.title = "工程师";
    u.email = "zhang.san@example.com";
    u.remark = "备注\n第二行 \"quoted\"\0tail"s;
    u.extension = R"({"爱好":"旅游","工位":"3"})";
    u.login_id = "zs";
    u.dept_id_list = {1, 2, -3, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()};
    u.dept_order = -176;
    u.leader = true;
    u.hired_date = 1598889600000;
    u.has_hired_date = true;
    u.active = false;
    u.exclusive_account = true;
    PackedUserItem p(u);
    BOOST_TEST(same(p.unpack(), u));
    BOOST_TEST(p.size() < 650u);  // the text (~560 bytes) and a few bytes of lengths

    for (int flag = 0; flag < 5; ++flag) {
        UserItem f;
        f.active = flag == 0 ? false : true;
        f.admin = flag == 1;
        f.boss = flag == 2;
        f.hide_mobile = flag == 3;
        f.exclusive_account = flag == 4;
        BOOST_TEST(same(PackedUserItem(f).unpack(), f));
    }
    UserItem empty;
    BOOST_TEST(same(PackedUserItem(empty).unpack(), empty));
    BOOST_TEST(same(PackedUserItem().unpack(), empty));

    PackedUserItem copy = p;
    BOOST_TEST(same(copy.unpack(), u));
    BOOST_TEST(copy.size() == p.size());
    PackedUserItem moved = std::move(copy);
    BOOST_TEST(same(moved.unpack(), u));
}

BOOST_AUTO_TEST_SUITE_END()
