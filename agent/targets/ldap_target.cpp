#include "agent/targets/ldap_target.h"

#include <ldap.h>
#include <netdb.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <map>

#include "agent/sync/build.h"
#include "agent/targets/utc_time.h"
#include "shared/ascii.h"
#include "shared/match_key.h"

namespace dingbridge::agent {

namespace {

const char* const kDrift = "\x01ldap";  // a custom key no mapping can produce: forces an update

bool ends_with_dn(const std::string& dn_lower, const std::string& suffix_lower) {
    return dn_lower.size() > suffix_lower.size() &&
           dn_lower.compare(dn_lower.size() - suffix_lower.size(), suffix_lower.size(), suffix_lower) == 0 &&
           dn_lower[dn_lower.size() - suffix_lower.size() - 1] == ',';
}

// The DN as the server writes it back (OpenLDAP's "pretty" form: \22 for a quote, UTF-8 kept),
// so that DNs we build and DNs we read compare equal.
std::string canonical_dn(const std::string& dn) {
    LDAPDN parsed = nullptr;
    if (ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS) return dn;
    char* out = nullptr;
    std::string result = dn;
    if (ldap_dn2str(parsed, &out, LDAP_DN_FORMAT_LDAPV3 | LDAP_DN_PRETTY) == LDAP_SUCCESS && out) result = out;
    if (out) ldap_memfree(out);
    ldap_dnfree(parsed);
    return result;
}

// Position of the first unescaped ',' (the end of the first RDN), or npos.
std::size_t first_rdn_end(const std::string& dn) {
    for (std::size_t i = 0; i < dn.size(); ++i) {
        if (dn[i] == '\\')
            ++i;
        else if (dn[i] == ',')
            return i;
    }
    return std::string::npos;
}

std::string parent_of(const std::string& dn) {
    auto p = first_rdn_end(dn);
    return p == std::string::npos ? std::string() : dn.substr(p + 1);
}

std::string first_rdn(const std::string& dn) { return dn.substr(0, first_rdn_end(dn)); }

// The (unescaped) value of a DN's first RDN.
std::string rdn_value(const std::string& dn) {
    LDAPDN parsed = nullptr;
    if (ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS || !parsed || !parsed[0] ||
        !parsed[0][0]) {
        if (parsed) ldap_dnfree(parsed);
        return {};
    }
    std::string v(parsed[0][0]->la_value.bv_val, parsed[0][0]->la_value.bv_len);
    ldap_dnfree(parsed);
    return v;
}

// An entry at `have` must be renamed to be at `want`: another DN (compared ignoring ASCII case,
// as the directory's DN matching does for these attributes), or the same DN with its own name in
// another case ("Sales" renamed "SALES"), which a rename carries out and the read gives back.
bool needs_rename(const std::string& have, const std::string& want) {
    return ascii_lower(have) != ascii_lower(want) || rdn_value(have) != rdn_value(want);
}

// LDAPMod arrays built from strings this object owns.
class Mods {
public:
    Mods& put(int op, std::string attr, std::vector<std::string> values) {
        list_.push_back(One{op, std::move(attr), std::move(values)});
        return *this;
    }
    bool empty() const { return list_.empty(); }
    LDAPMod** build() {
        mods_.assign(list_.size(), LDAPMod{});
        bv_.assign(list_.size(), {});
        bvp_.assign(list_.size(), {});
        ptrs_.clear();
        for (std::size_t i = 0; i < list_.size(); ++i) {
            auto& one = list_[i];
            bv_[i].resize(one.values.size());
            for (std::size_t j = 0; j < one.values.size(); ++j)
                bv_[i][j] = berval{static_cast<ber_len_t>(one.values[j].size()), one.values[j].data()};
            for (auto& b : bv_[i]) bvp_[i].push_back(&b);
            bvp_[i].push_back(nullptr);
            mods_[i].mod_op = one.op | LDAP_MOD_BVALUES;
            mods_[i].mod_type = one.attr.data();
            mods_[i].mod_bvalues = bvp_[i].data();
            ptrs_.push_back(&mods_[i]);
        }
        ptrs_.push_back(nullptr);
        return ptrs_.data();
    }

private:
    struct One {
        int op;
        std::string attr;
        std::vector<std::string> values;
    };
    std::vector<One> list_;
    std::vector<LDAPMod> mods_;
    std::vector<std::vector<berval>> bv_;
    std::vector<std::vector<berval*>> bvp_;
    std::vector<LDAPMod*> ptrs_;
};

// One search result entry decoded in a single pass over its BER encoding
// (ldap_get_values_len would re-scan the entry for every attribute asked for).
struct Entry {
    std::string dn;
    std::vector<std::pair<std::string, std::vector<std::string>>> attrs;

    const std::vector<std::string>* find(const std::string& name) const {
        for (const auto& [n, v] : attrs)
            if (strcasecmp(n.c_str(), name.c_str()) == 0) return &v;
        return nullptr;
    }
    std::string first(const std::string& name) const {
        auto v = find(name);
        return v && !v->empty() ? v->front() : std::string();
    }
    std::vector<std::string> all(const std::string& name) const {
        auto v = find(name);
        return v ? *v : std::vector<std::string>{};
    }
};

bool decode_entry(LDAP* ld, LDAPMessage* e, Entry& out) {
    out.dn.clear();
    out.attrs.clear();
    BerElement* ber = nullptr;
    berval bv{0, nullptr};
    if (ldap_get_dn_ber(ld, e, &ber, &bv) != LDAP_SUCCESS) {
        if (ber) ber_free(ber, 0);
        return false;
    }
    out.dn.assign(bv.bv_val, bv.bv_len);
    berval* values = nullptr;
    while (ldap_get_attribute_ber(ld, e, ber, &bv, &values) == LDAP_SUCCESS && bv.bv_val) {
        auto& [name, list] = out.attrs.emplace_back(std::string(bv.bv_val, bv.bv_len), std::vector<std::string>{});
        (void)name;
        for (berval* v = values; v && v->bv_val; ++v) list.emplace_back(v->bv_val, v->bv_len);
        if (values) ber_memfree(values);
        values = nullptr;
    }
    if (ber) ber_free(ber, 0);
    return true;
}

std::vector<std::string> values_of(LDAP* ld, LDAPMessage* e, const char* attr) {
    std::vector<std::string> out;
    berval** v = ldap_get_values_len(ld, e, attr);
    if (!v) return out;
    for (int i = 0; v[i]; ++i) out.emplace_back(v[i]->bv_val, v[i]->bv_len);
    ldap_value_free_len(v);
    return out;
}

std::string first_value(LDAP* ld, LDAPMessage* e, const char* attr) {
    auto v = values_of(ld, e, attr);
    return v.empty() ? std::string() : v.front();
}

std::string diagnostic(LDAP* ld) {
    char* msg = nullptr;
    std::string out;
    if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) == LDAP_OPT_SUCCESS && msg) {
        out = msg;
        ldap_memfree(msg);
    }
    return out;
}

// Whether a TCP connection to the URL's host and port opens: tells a TLS failure of ldaps://
// (reported by libldap as "can't contact") from a server that is not there.
bool tcp_reachable(const std::string& url, std::chrono::milliseconds timeout) {
    LDAPURLDesc* lud = nullptr;
    if (ldap_url_parse(url.c_str(), &lud) != LDAP_URL_SUCCESS || !lud) return false;
    std::string host = lud->lud_host && *lud->lud_host ? lud->lud_host : "localhost";
    std::string port = std::to_string(lud->lud_port ? lud->lud_port : 636);
    ldap_free_urldesc(lud);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return false;
    bool ok = false;
    for (addrinfo* a = res; a && !ok; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            ok = true;
        else if (errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            int err = 0;
            socklen_t len = sizeof err;
            ok = poll(&p, 1, static_cast<int>(timeout.count())) == 1 &&
                 getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
        }
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

bool connection_lost(int rc) { return rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR || rc == LDAP_TIMEOUT; }

// A user's field as named in the attribute map: one of the schema's text fields (SmallString)
// or "custom.<key>" (std::string).
class FieldRef {
public:
    explicit FieldRef(SmallString* s) : s_(s) {}
    explicit FieldRef(std::string* c) : c_(c) {}
    std::string_view get() const { return s_ ? s_->view() : std::string_view(*c_); }
    void set(std::string_view v) {
        if (s_)
            *s_ = v;
        else
            c_->assign(v);
    }

private:
    SmallString* s_ = nullptr;
    std::string* c_ = nullptr;
};

// Only for names the configuration check accepted.
FieldRef user_field(OrgUser& u, const std::string& field) {
    if (field.rfind("custom.", 0) == 0) return FieldRef(&u.custom[field.substr(7)]);
    if (SmallString* s = user_text_field(u, field)) return FieldRef(s);
    throw std::logic_error("LDAP attribute map: unknown user field " + field);
}

std::string user_value(const OrgUser& u, const std::string& field) {
    if (field.rfind("custom.", 0) == 0) {
        auto it = u.custom.find(field.substr(7));
        return it != u.custom.end() ? it->second : "";
    }
    const SmallString* s = user_text_field(u, field);
    return s ? s->str() : "";
}

// A user's memberships in the order both sides of the diff use: the primary department first
// (patch_desired takes the first as primary when it re-derives managers), then by id. Without a
// stored primary (primary_department not mapped to an attribute) the primary is the first
// membership, by id, whose leaders give the user's stored manager, else the lowest id: a user
// an event does not name then keeps the manager a full sync wrote.
void sort_memberships(const OrgSnapshot& snap, const std::string& id, OrgUser& u, bool primary_stored) {
    std::string primary = u.primary_department;
    if (!primary_stored) {
        primary.clear();
        std::sort(u.departments.begin(), u.departments.end(),
                  [](const Membership& a, const Membership& b) { return a.department < b.department; });
        auto synced = [&snap](const std::string& l) { return snap.users.count(l) > 0; };
        for (const auto& m : u.departments)
            if (leader_manager(snap, id, m.department, synced) == u.manager) {
                primary = m.department;
                break;
            }
    }
    sort_primary_first(u.departments, primary);
}

bool contains(const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

// A paged search (RFC 2696): servers cap unpaged results (OpenLDAP: 500 for non-root binds).
// Returns an LDAP result code; LDAP_NO_SUCH_OBJECT for a missing base is returned as is.
template <class F>
int paged_search(LDAP* ld, const std::string& base, int scope, const std::string& filter,
                 const std::vector<const char*>& attrs, int page_size, F&& on_entry) {
    berval cookie{0, nullptr};
    std::vector<char*> attr_list;
    for (const char* a : attrs) attr_list.push_back(const_cast<char*>(a));
    attr_list.push_back(nullptr);
    int result = LDAP_SUCCESS;
    for (;;) {
        LDAPControl* page = nullptr;
        int rc = ldap_create_page_control(ld, page_size, cookie.bv_val ? &cookie : nullptr, 0, &page);
        if (rc != LDAP_SUCCESS) {
            result = rc;
            break;
        }
        LDAPControl* controls[] = {page, nullptr};
        LDAPMessage* res = nullptr;
        rc = ldap_search_ext_s(ld, base.c_str(), scope, filter.c_str(), attr_list.data(), 0, controls, nullptr, nullptr,
                               LDAP_NO_LIMIT, &res);
        ldap_control_free(page);
        if (rc != LDAP_SUCCESS) {
            if (res) ldap_msgfree(res);
            result = rc;
            break;
        }
        for (LDAPMessage* e = ldap_first_entry(ld, res); e; e = ldap_next_entry(ld, e)) on_entry(e);
        int err = LDAP_SUCCESS;
        LDAPControl** returned = nullptr;
        rc = ldap_parse_result(ld, res, &err, nullptr, nullptr, nullptr, &returned, 0);
        ldap_msgfree(res);
        if (cookie.bv_val) ber_memfree(cookie.bv_val);
        cookie = berval{0, nullptr};
        if (rc != LDAP_SUCCESS || err != LDAP_SUCCESS) {
            if (returned) ldap_controls_free(returned);
            result = rc != LDAP_SUCCESS ? rc : err;
            break;
        }
        LDAPControl* response = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, returned, nullptr);
        ber_int_t estimate = 0;
        if (response) (void)ldap_parse_pageresponse_control(ld, response, &estimate, &cookie);
        if (returned) ldap_controls_free(returned);
        if (!response || cookie.bv_len == 0) break;
    }
    if (cookie.bv_val) ber_memfree(cookie.bv_val);
    return result;
}

}  // namespace

void LdapDeleter::operator()(LDAP* ld) const {
    if (ld) ldap_unbind_ext_s(ld, nullptr, nullptr);
}

std::string ldap_escape_rdn_value(const std::string& v) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        char ch = v[i];
        bool special = ch == ',' || ch == '+' || ch == '"' || ch == '\\' || ch == '<' || ch == '>' || ch == ';' ||
                       ch == '=' || (i == 0 && (ch == ' ' || ch == '#')) || (i + 1 == v.size() && ch == ' ');
        if (ch == '\0') {
            out += "\\00";
            continue;
        }
        if (special) out += '\\';
        out += ch;
    }
    return out;
}

LdapHandle ldap_open_session(const LdapSettings& s, std::string& step, std::string& error) {
    LDAP* raw = nullptr;
    step = "connect";
    int rc = ldap_initialize(&raw, s.url.c_str());
    LdapHandle ld(raw);
    if (rc != LDAP_SUCCESS) {
        error = std::string("invalid URL: ") + ldap_err2string(rc);
        return nullptr;
    }
    int version = LDAP_VERSION3;
    ldap_set_option(raw, LDAP_OPT_PROTOCOL_VERSION, &version);
    ldap_set_option(raw, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    timeval tv{static_cast<time_t>(s.timeout.count() / 1000),
               static_cast<suseconds_t>((s.timeout.count() % 1000) * 1000)};
    ldap_set_option(raw, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(raw, LDAP_OPT_TIMEOUT, &tv);
    // Certificate checks always on (the bind password crosses this connection).
    int demand = LDAP_OPT_X_TLS_DEMAND;
    ldap_set_option(raw, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    if (!s.ca_file.empty()) ldap_set_option(raw, LDAP_OPT_X_TLS_CACERTFILE, s.ca_file.c_str());
    int is_server = 0;
    if ((rc = ldap_set_option(raw, LDAP_OPT_X_TLS_NEWCTX, &is_server)) != LDAP_OPT_SUCCESS) {
        step = "TLS";
        error = "cannot set up TLS (CA file " + (s.ca_file.empty() ? std::string("system bundle") : s.ca_file) + ")";
        return nullptr;
    }
    bool ldaps = s.url.rfind("ldaps://", 0) == 0;
    rc = ldaps ? ldap_connect(raw) : ldap_start_tls_s(raw, nullptr, nullptr);
    if (rc != LDAP_SUCCESS) {
        std::string diag = diagnostic(raw);
        // A TCP failure is "Can't contact LDAP server" with an errno-ish diagnostic; a handshake
        // failure names TLS or the certificate.
        std::string l = ascii_lower(diag);
        bool tls = rc == LDAP_CONNECT_ERROR || l.find("tls") != std::string::npos ||
                   l.find("certificate") != std::string::npos || l.find("handshake") != std::string::npos ||
                   (!ldaps && rc != LDAP_SERVER_DOWN) || (ldaps && tcp_reachable(s.url, s.timeout));
        step = tls ? "TLS" : "connect";
        error = std::string(ldap_err2string(rc)) + (diag.empty() ? "" : " (" + diag + ")");
        return nullptr;
    }
    step = "bind";
    berval cred{static_cast<ber_len_t>(s.bind_password.size()), const_cast<char*>(s.bind_password.data())};
    rc = ldap_sasl_bind_s(raw, s.bind_dn.c_str(), LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
    if (rc != LDAP_SUCCESS) {
        std::string diag = diagnostic(raw);
        error = "as " + s.bind_dn + ": " + ldap_err2string(rc) + (diag.empty() ? "" : " (" + diag + ")");
        return nullptr;
    }
    return ld;
}

std::unique_ptr<Target> make_ldap_target(const LdapSettings& settings) {
    return std::make_unique<LdapTarget>(settings);
}

LdapTarget::LdapTarget(LdapSettings settings) : s_(std::move(settings)) {
    // libldap writes with plain write(): a server that went away would kill the agent with
    // SIGPIPE instead of failing the change (and letting the run record it).
    std::signal(SIGPIPE, SIG_IGN);
    for (auto* dn : {&s_.departments_dn, &s_.users_dn, &s_.removed_users_dn, &s_.empty_group_member})
        if (!dn->empty()) *dn = canonical_dn(*dn);
}

LdapTarget::~LdapTarget() {
    if (ld_) ldap_unbind_ext_s(ld_, nullptr, nullptr);
}

std::string LdapTarget::ldap_error(const std::string& what, int rc) const {
    std::string diag = diagnostic(ld_);
    return what + ": " + ldap_err2string(rc) + (diag.empty() ? "" : " (" + diag + ")");
}

Status LdapTarget::connect() {
    if (ld_) return {};
    // A directory that just failed to answer is not tried again for every remaining change of
    // the run (each try could wait for the whole timeout): those fail at once for a moment.
    auto now = std::chrono::steady_clock::now();
    if (now < down_until_) return fail(down_error_);
    std::string step, error;
    LdapHandle h = ldap_open_session(s_, step, error);
    if (!h) {
        down_error_ = "directory " + s_.url + ": " + step + " failed: " + error;
        down_until_ = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        return fail(down_error_);
    }
    ld_ = h.release();
    return {};
}

// ---- desired org: keep only what the directory holds ----

void LdapTarget::normalize(OrgSnapshot& desired) {
    for (auto& [id, d] : desired.departments) {
        d.order = 0;
        d.custom.clear();
        if (!d.parent_external_id.empty() && !desired.departments.count(d.parent_external_id))
            d.parent_external_id.clear();
        // Leaders (the group's owner values) in DingTalk's order: the first one is the manager.
        std::vector<std::string> leaders;
        if (s_.groups())
            for (const auto& l : d.leaders)
                if (desired.users.count(l) && !contains(leaders, l)) leaders.push_back(l);
        d.leaders = std::move(leaders);
    }
    std::set<std::string> mapped;
    for (const auto& a : s_.user_attributes) mapped.insert(a.field);
    const bool primary_stored = s_.maps("primary_department");
    desired_dn_.clear();
    for (auto& [id, u] : desired.users) {
        OrgUser n;
        n.external_id = u.external_id;
        for (const auto& f : mapped) user_field(n, f).set(user_value(u, f));
        fill_required(n);
        if (!s_.manager_attribute.empty() && desired.users.count(u.manager)) n.manager = u.manager;
        if (s_.groups()) {
            // The leader flag as read() gives it back: the user is among the department's leaders.
            for (const auto& m : u.departments)
                if (auto d = desired.departments.find(m.department); d != desired.departments.end())
                    n.departments.push_back(Membership{m.department, 0, contains(d->second.leaders, id)});
            std::sort(n.departments.begin(), n.departments.end(),
                      [](const Membership& a, const Membership& b) { return a.department < b.department; });
            n.departments.erase(std::unique(n.departments.begin(), n.departments.end()), n.departments.end());
            sort_memberships(desired, id, n, primary_stored);
        }
        u = std::move(n);
        desired_dn_[id] = user_dn(u);
    }
}

std::string LdapTarget::user_dn(const OrgUser& u) const {
    std::string value;
    for (const auto& a : s_.user_attributes)
        if (a.attribute == s_.user_rdn_attribute) value = user_value(u, a.field);
    if (value.empty()) return {};
    return canonical_dn(s_.user_rdn_attribute + "=" + ldap_escape_rdn_value(value) + "," + s_.users_dn);
}

void LdapTarget::planned(const SyncPlan& plan) {
    // normalize() named each user by its desired username, before the plan settled conflicts (a
    // user whose username another one holds is written with its userid): a manager or owner
    // value written with that DN would name the other user. A user the plan leaves alone stays
    // where it is; one it writes goes where its last write puts it.
    for (auto& [id, dn] : desired_dn_)
        if (auto u = users_.find(id); u != users_.end() && !u->second.removed) dn = u->second.dn;
    for (const auto& c : plan.changes)
        if ((c.kind == ChangeKind::create_user || c.kind == ChangeKind::update_user) && c.user)
            desired_dn_[c.external_id.str()] = user_dn(*c.user);
}

void LdapTarget::resolve_name_clashes(OrgSnapshot& desired, const OrgSnapshot& current) const {
    // A name this rule gave earlier (read back from the directory, or kept by the event path's
    // cache) is decided afresh: the department may hold the plain name now.
    for (auto& [id, d] : desired.departments) {
        const std::string suffix = " (" + id + ")";
        if (d.name.size() > suffix.size() && d.name.compare(d.name.size() - suffix.size(), suffix.size(), suffix) == 0)
            d.name.erase(d.name.size() - suffix.size());
    }
    // Who holds each name under each parent in the directory now (key -> department).
    std::map<std::string, std::map<std::string, std::string>> held;
    for (const auto& [id, d] : current.departments) held[d.parent_external_id][directory_match_key(d.name)] = id;
    std::map<std::string, std::vector<std::string>> children;  // parent -> its departments, as desired
    for (const auto& [id, d] : desired.departments) children[d.parent_external_id].push_back(id);
    auto by_number = [](const std::string& a, const std::string& b) {
        return a.size() != b.size() ? a.size() < b.size() : a < b;  // numeric ids in number order
    };
    static const std::map<std::string, std::string> kNone;
    for (const auto& [parent, ids] : children) {
        const auto h = held.find(parent);
        const auto& holders = h == held.end() ? kNone : h->second;
        std::map<std::string, std::vector<std::string>> by_key;
        for (const auto& id : ids) by_key[directory_match_key(desired.departments[id].name)].push_back(id);
        // Another department holds a name while this run gives it up (a rename, a move, a
        // removal) or two want one: one department keeps it, the others take "name (id)" for now.
        // A name held by a department that lets it go in this run is free only in the next one
        // (changes are applied one by one, in an order that cannot follow every hand-over, and
        // two departments swapping names would each wait for the other).
        auto holder_of = [&](const std::string& key) {
            const auto it = holders.find(key);
            return it == holders.end() ? std::string() : it->second;
        };
        std::vector<std::string> renamed;
        for (auto& [key, group] : by_key) {
            const std::string holder = holder_of(key);
            if (group.size() < 2 && (holder.empty() || holder == group.front())) continue;
            std::sort(group.begin(), group.end(), by_number);
            // The department the directory holds under this name keeps it (its DN, and whatever
            // is keyed on it, stays); a name nobody holds goes to the oldest, the lowest id.
            std::string keeper = holder.empty() ? group.front() : holder;
            for (const auto& id : group)
                if (id != keeper) renamed.push_back(id);
        }
        if (renamed.empty()) continue;
        std::sort(renamed.begin(), renamed.end(), by_number);
        auto taken = [&](const std::string& key, const std::string& id) {
            const std::string holder = holder_of(key);
            if (!holder.empty() && holder != id) return true;
            const auto it = by_key.find(key);
            return it != by_key.end() && !(it->second.size() == 1 && it->second.front() == id);
        };
        for (const auto& id : renamed) {
            std::string& name = desired.departments[id].name;
            do {
                name += " (" + id + ")";  // again if a sibling is called that already
            } while (taken(directory_match_key(name), id));
            by_key[directory_match_key(name)].push_back(id);
        }
    }
}

std::string (*LdapTarget::username_key() const)(std::string_view) {
    // The username names the entry (uid=..., matched as slapd matches an RDN).
    for (const auto& a : s_.user_attributes)
        if (a.attribute == s_.user_rdn_attribute && a.field == "username") return directory_match_key;
    return nullptr;
}

void LdapTarget::fill_required(OrgUser& u) const {
    // Attributes the schema requires (cn, sn) and the RDN need a value: the DingTalk id.
    for (const auto& a : s_.user_attributes) {
        std::string la = ascii_lower(a.attribute);
        if (la == "cn" || la == "sn" || a.attribute == s_.user_rdn_attribute) {
            FieldRef f = user_field(u, a.field);
            if (f.get().empty()) f.set(u.external_id.str());
        }
    }
}

// ---- read ----

struct LdapTarget::GroupRead {
    std::string dn, cn;
    std::vector<std::string> members, owners;
};

// The departments (organizational units) and, with groups, their groups by department id.
Status LdapTarget::read_departments(OrgSnapshot& snap, std::unordered_map<std::string, GroupRead>& groups) {
    Entry ent;  // reused from entry to entry
    const std::string& idattr = s_.department_id_attribute;
    const std::string member = s_.member_attribute();
    std::unordered_map<std::string, std::string> dept_by_dn;  // lower DN -> id
    std::string filter = s_.groups() ? "(|(objectClass=organizationalUnit)(objectClass=" + s_.group_class + "))"
                                     : "(objectClass=organizationalUnit)";
    int rc = paged_search(
        ld_, s_.departments_dn, LDAP_SCOPE_SUBTREE, filter,
        {"objectClass", idattr.c_str(), "cn", "description", member.c_str(), "owner"}, s_.page_size,
        [&](LDAPMessage* e) {
            if (!decode_entry(ld_, e, ent)) return;
            std::string id = ent.first(idattr.c_str());
            if (id.empty()) return;  // not ours
            std::string dn = canonical_dn(ent.dn);
            bool ou = false;
            for (const auto& oc : ent.all("objectClass")) ou = ou || ascii_lower(oc) == "organizationalunit";
            if (!ou) {
                groups.emplace(id, GroupRead{dn, ent.first("cn"), ent.all(member.c_str()), ent.all("owner")});
                return;
            }
            if (depts_.count(id)) return;  // a duplicate id: the first one wins
            OrgDepartment d;
            d.external_id = id;
            d.name = rdn_value(dn);
            d.description = ent.first("description");
            dept_by_dn[ascii_lower(dn)] = id;
            depts_[id].dn = dn;
            depts_[id].name = d.name;
            snap.departments.emplace(id, std::move(d));
        });
    if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) {
        if (connection_lost(rc)) rollback_connection();
        return fail(search_error(s_.departments_dn, rc));
    }
    const std::string departments_lower = ascii_lower(s_.departments_dn);
    for (auto& [id, d] : snap.departments) {
        std::string parent = ascii_lower(parent_of(depts_[id].dn));
        if (parent == departments_lower)
            d.parent_external_id.clear();
        else if (auto it = dept_by_dn.find(parent); it != dept_by_dn.end())
            d.parent_external_id = it->second;
        else
            d.parent_external_id = "?" + parent;  // somewhere else: the next update moves it back
    }

    return {};
}

Status LdapTarget::read_users(OrgSnapshot& snap) {
    Entry ent;  // reused from entry to entry
    // Users (active under users_dn, disabled under removed_users_dn).
    std::vector<const char*> attrs = {s_.user_id_attribute.c_str(), "modifyTimestamp"};
    for (const auto& a : s_.user_attributes) attrs.push_back(a.attribute.c_str());
    if (!s_.manager_attribute.empty()) attrs.push_back(s_.manager_attribute.c_str());
    const std::string removed_lower = ascii_lower(s_.removed_users_dn);
    std::unordered_map<std::string, std::string> manager_dn;
    auto on_user = [&](LDAPMessage* e) {
        if (!decode_entry(ld_, e, ent)) return;
        std::string id = ent.first(s_.user_id_attribute.c_str());
        if (id.empty() || users_.count(id)) return;
        std::string dn = canonical_dn(ent.dn);
        std::string dn_lower = ascii_lower(dn);
        User& entry = users_[id];
        entry.dn = dn;
        user_by_dn_[dn_lower] = id;
        if (ends_with_dn(dn_lower, removed_lower)) {
            entry.removed = true;
            snap.removed_users[id] = utc_seconds(ent.first("modifyTimestamp"), "%4d%2d%2d%2d%2d%2d", 14);
            return;
        }
        OrgUser u;
        u.external_id = id;
        std::set<std::string> seen;
        for (const auto& a : s_.user_attributes) {
            std::string v = ent.first(a.attribute.c_str());
            FieldRef f = user_field(u, a.field);
            if (seen.insert(a.field).second)
                f.set(v);
            else if (f.get() != v)
                u.custom[kDrift] = "attributes of " + a.field + " disagree";
        }
        // custom fields read back empty are absent in the desired org
        for (auto it = u.custom.begin(); it != u.custom.end();)
            it = it->second.empty() ? u.custom.erase(it) : std::next(it);
        if (!s_.manager_attribute.empty()) manager_dn[id] = ent.first(s_.manager_attribute.c_str());
        snap.users.emplace(id, std::move(u));
    };
    int rc =
        paged_search(ld_, s_.users_dn, LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", attrs, s_.page_size, on_user);
    if (rc == LDAP_SUCCESS || rc == LDAP_NO_SUCH_OBJECT) {
        if (!ends_with_dn(removed_lower, ascii_lower(s_.users_dn)))
            rc = paged_search(ld_, s_.removed_users_dn, LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", attrs,
                              s_.page_size, on_user);
    }
    if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) {
        if (connection_lost(rc)) rollback_connection();
        return fail(search_error(s_.users_dn, rc));
    }
    for (auto& [id, dn] : manager_dn) {
        if (dn.empty()) continue;
        users_[id].manager_dn = dn;
        auto it = user_by_dn_.find(ascii_lower(dn));
        snap.users[id].manager = it != user_by_dn_.end() ? it->second : "?" + dn;
    }

    return {};
}

// Groups: members and owners back to ids; a group out of place makes its department drift.
void LdapTarget::read_groups(OrgSnapshot& snap, std::unordered_map<std::string, GroupRead>& groups) {
    const std::string removed_lower = ascii_lower(s_.removed_users_dn);
    for (auto& [id, d] : snap.departments) {
        Dept& dept = depts_[id];
        auto g = groups.find(id);
        if (!s_.groups()) continue;
        if (g == groups.end()) {
            d.custom[kDrift] = "no group";
            continue;
        }
        dept.group_dn = g->second.dn;
        const std::string users_lower = ascii_lower(s_.users_dn);
        for (auto& m : g->second.members) {
            std::string l = ascii_lower(m);
            if (is_placeholder(dept, m)) {
                if (l != ascii_lower(placeholder(dept))) d.custom[kDrift] = "placeholder of another DN";
                dept.placeholders.push_back(std::move(m));
            } else if (!user_by_dn_.count(l) && (ends_with_dn(l, users_lower) || ends_with_dn(l, removed_lower))) {
                dept.stale.push_back(std::move(m));
                d.custom[kDrift] = "stale member";
            } else {
                dept.members.emplace(std::move(l), std::move(m));
            }
        }
        dept.owners = std::move(g->second.owners);
        if (ascii_lower(parent_of(dept.group_dn)) != ascii_lower(dept.dn) || g->second.cn != d.name)
            d.custom[kDrift] = "group misplaced";
        // Owners in the order stored (DingTalk's, as set_owners writes them; OpenLDAP returns
        // values in the order written unless `sortvals` names the attribute).
        for (const auto& o : dept.owners) {
            auto u = user_by_dn_.find(ascii_lower(o));
            d.leaders.push_back(u != user_by_dn_.end() ? u->second : "?" + o);
        }
        for (const auto& [m, stored] : dept.members) {
            auto u = user_by_dn_.find(m);
            if (u == user_by_dn_.end()) continue;
            auto su = snap.users.find(u->second);
            if (su == snap.users.end()) continue;  // a disabled user still in a group: not a membership
            users_[u->second].groups.insert(id);
            su->second.departments.push_back(Membership{id, 0, contains(d.leaders, u->second)});
        }
        groups.erase(g);  // its member list's buffer (the values were moved out) is not needed any more
    }
}

Result<OrgSnapshot> LdapTarget::read() {
    if (auto r = connect(); !r) return fail(r.error());
    depts_.clear();
    users_.clear();
    user_by_dn_.clear();
    OrgSnapshot snap;
    std::unordered_map<std::string, GroupRead> groups;
    if (auto r = read_departments(snap, groups); !r) return fail(r.error());
    if (auto r = read_users(snap); !r) return fail(r.error());
    read_groups(snap, groups);
    const bool primary_stored = s_.maps("primary_department");
    for (auto& [id, u] : snap.users) sort_memberships(snap, id, u, primary_stored);
    spdlog::info("ldap target: read {} departments, {} users ({} disabled) from {}", snap.departments.size(),
                 snap.users.size(), snap.removed_users.size(), s_.url);
    return snap;
}

std::string LdapTarget::search_error(const std::string& base, int rc) const {
    std::string error = ldap_error("searching " + base, rc);
    if (rc == LDAP_SIZELIMIT_EXCEEDED)
        error += "; the bind DN's size limit caps paged searches too (OpenLDAP: limits dn.exact=\"" + s_.bind_dn +
                 "\" size.prtotal=unlimited)";
    return error;
}

void LdapTarget::rollback_connection() {
    if (ld_) ldap_unbind_ext_s(ld_, nullptr, nullptr);
    ld_ = nullptr;
}

// ---- run ----

Status LdapTarget::ensure_container(const std::string& dn) {
    int rc = paged_search(ld_, dn, LDAP_SCOPE_BASE, "(objectClass=*)", {"1.1"}, s_.page_size, [](LDAPMessage*) {});
    if (rc == LDAP_SUCCESS) return {};
    if (rc != LDAP_NO_SUCH_OBJECT) return fail(ldap_error("reading " + dn, rc));
    if (ascii_lower(first_rdn(dn)).rfind("ou=", 0) != 0)
        return fail(dn + " does not exist (create it, or use an ou= DN)");
    Mods m;
    m.put(LDAP_MOD_ADD, "objectClass", {"top", "organizationalUnit"}).put(LDAP_MOD_ADD, "ou", {rdn_value(dn)});
    rc = ldap_add_ext_s(ld_, dn.c_str(), m.build(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS && rc != LDAP_ALREADY_EXISTS) return fail(ldap_error("creating " + dn, rc));
    return {};
}

Status LdapTarget::begin() {
    if (auto r = connect(); !r) return r;
    for (const auto* dn : {&s_.departments_dn, &s_.users_dn, &s_.removed_users_dn})
        if (auto r = ensure_container(*dn); !r) return r;
    return {};
}

Status LdapTarget::commit() {
    return {};  // every change is already in the directory
}

Status LdapTarget::apply(const Change& change) {
    if (auto r = connect(); !r) return r;
    auto outcome = write_change(change);
    // The connection is gone (server stopped, network): reconnect on the next change.
    if (!outcome && ld_) {
        int rc = LDAP_SUCCESS;
        ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &rc);
        if (connection_lost(rc)) rollback_connection();
    }
    return outcome;
}

std::string LdapTarget::user_dn_for(const std::string& id) const {
    if (auto it = desired_dn_.find(id); it != desired_dn_.end()) return it->second;
    if (auto it = users_.find(id); it != users_.end()) return it->second.dn;
    return {};
}

std::string LdapTarget::placeholder(const Dept& d) const {
    return s_.empty_group_member.empty() ? d.group_dn : s_.empty_group_member;
}

bool LdapTarget::is_placeholder(const Dept& d, const std::string& value) const {
    std::string v = ascii_lower(value);
    if (user_by_dn_.count(v)) return false;
    return v == ascii_lower(placeholder(d)) || ends_with_dn(v, ascii_lower(s_.departments_dn));
}

Status LdapTarget::set_owners(Dept& d, const std::vector<std::string>& leaders) {
    std::vector<std::string> want;
    for (const auto& id : leaders)
        if (auto dn = user_dn_for(id); !dn.empty()) want.push_back(dn);
    // Replaced whenever the set or the order differs: the order is DingTalk's (the first leader
    // is the manager derived in run mode, from the values read back).
    auto norm = [](std::vector<std::string> v) {
        for (auto& x : v) x = ascii_lower(x);
        return v;
    };
    if (norm(want) == norm(d.owners)) return {};
    Mods m;
    m.put(LDAP_MOD_REPLACE, "owner", want);
    int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), m.build(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS) return fail(ldap_error("setting the owners of " + d.group_dn, rc));
    d.owners = std::move(want);
    return {};
}

// Adds the department's organizationalUnit at `want`, or takes over one an interrupted run left.
Status LdapTarget::add_department_entry(const OrgDepartment& d, Dept& cur, const std::string& want,
                                        std::vector<std::string>& desc) {
    const std::string& idattr = s_.department_id_attribute;
    Mods m;
    m.put(LDAP_MOD_ADD, "objectClass", {"top", "organizationalUnit"})
        .put(LDAP_MOD_ADD, "ou", {d.name})
        .put(LDAP_MOD_ADD, idattr, {d.external_id});
    if (!desc.empty()) m.put(LDAP_MOD_ADD, "description", desc);
    int rc = ldap_add_ext_s(ld_, want.c_str(), m.build(), nullptr, nullptr);
    if (rc == LDAP_ALREADY_EXISTS) {
        // From an earlier, interrupted run — or someone else's entry, which we leave alone.
        std::string owner;
        (void)paged_search(ld_, want, LDAP_SCOPE_BASE, "(objectClass=*)", {idattr.c_str()}, 1,
                           [&](LDAPMessage* e) { owner = first_value(ld_, e, idattr.c_str()); });
        if (owner != d.external_id) {
            depts_.erase(d.external_id);
            return fail(want + " already exists and is not department " + d.external_id + " (" + idattr + ": " +
                        (owner.empty() ? "none" : owner) + ")");
        }
    } else if (rc != LDAP_SUCCESS) {
        depts_.erase(d.external_id);
        return fail(ldap_error("adding " + want, rc));
    }
    cur.dn = want;
    if (rc == LDAP_SUCCESS)
        desc.clear();  // already written
    else {
        Mods fix;
        fix.put(LDAP_MOD_REPLACE, "description", desc);
        if ((rc = ldap_modify_ext_s(ld_, want.c_str(), fix.build(), nullptr, nullptr)) != LDAP_SUCCESS)
            return fail(ldap_error("updating " + want, rc));
    }
    return {};
}

// Renames or moves the department's organizationalUnit to `want`, then rewrites its description.
Status LdapTarget::update_department_entry(Dept& cur, const std::string& rdn, const std::string& parent_dn,
                                           const std::string& want, const std::vector<std::string>& desc) {
    if (needs_rename(cur.dn, want)) {
        bool move = ascii_lower(parent_of(cur.dn)) != ascii_lower(parent_dn);
        int rc =
            ldap_rename_s(ld_, cur.dn.c_str(), rdn.c_str(), move ? parent_dn.c_str() : nullptr, 1, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) return fail(ldap_error((move ? "moving " : "renaming ") + cur.dn + " to " + want, rc));
        // The subtree moved with it (no refint needed: nothing refers to department DNs but the
        // placeholder member of an empty group, its own DN, rewritten below).
        const std::string old = ascii_lower(cur.dn);
        std::vector<Dept*> moved_groups;
        for (auto& [id, other] : depts_) {
            for (std::string* dn : {&other.dn, &other.group_dn}) {
                std::string l = ascii_lower(*dn);
                if (l == old)
                    *dn = want;
                else if (ends_with_dn(l, old))
                    *dn = dn->substr(0, dn->size() - old.size()) + want;
            }
            if (&other != &cur && !other.placeholders.empty()) moved_groups.push_back(&other);
        }
        cur.dn = want;
        for (Dept* other : moved_groups)
            if (auto r = refresh_placeholder(*other); !r) return r;
    }
    Mods m;
    m.put(LDAP_MOD_REPLACE, "description", desc);
    int rc = ldap_modify_ext_s(ld_, want.c_str(), m.build(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS) return fail(ldap_error("updating " + want, rc));
    return {};
}

// The department's group: added, or renamed to follow the department; stale members dropped.
Status LdapTarget::put_department_group(const OrgDepartment& d, Dept& cur) {
    const std::string& idattr = s_.department_id_attribute;
    const std::string group_rdn = "cn=" + ldap_escape_rdn_value(d.name);
    const std::string want_group = canonical_dn(group_rdn + "," + cur.dn);
    if (cur.group_dn.empty()) {
        cur.group_dn = want_group;
        Mods m;
        m.put(LDAP_MOD_ADD, "objectClass", {"top", s_.group_class})
            .put(LDAP_MOD_ADD, "cn", {d.name})
            .put(LDAP_MOD_ADD, idattr, {d.external_id})
            .put(LDAP_MOD_ADD, s_.member_attribute(), {placeholder(cur)});
        int rc = ldap_add_ext_s(ld_, want_group.c_str(), m.build(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS && rc != LDAP_ALREADY_EXISTS) {
            cur.group_dn.clear();
            return fail(ldap_error("adding the group " + want_group, rc));
        }
        cur.members.clear();
        cur.placeholders.clear();
        if (rc == LDAP_SUCCESS) {
            cur.placeholders.push_back(placeholder(cur));
        } else {  // re-read what it holds
            (void)paged_search(ld_, want_group, LDAP_SCOPE_BASE, "(objectClass=*)", {s_.member_attribute(), "owner"}, 1,
                               [&](LDAPMessage* e) {
                                   for (auto& v : values_of(ld_, e, s_.member_attribute())) {
                                       if (is_placeholder(cur, v))
                                           cur.placeholders.push_back(std::move(v));
                                       else
                                           cur.members.emplace(ascii_lower(v), std::move(v));
                                   }
                                   cur.owners = values_of(ld_, e, "owner");
                               });
        }
    } else if (needs_rename(cur.group_dn, want_group)) {
        int rc = ldap_rename_s(ld_, cur.group_dn.c_str(), group_rdn.c_str(),
                               ascii_lower(parent_of(cur.group_dn)) != ascii_lower(cur.dn) ? cur.dn.c_str() : nullptr,
                               1, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) return fail(ldap_error("renaming the group " + cur.group_dn + " to " + want_group, rc));
        cur.group_dn = want_group;
    }
    if (!cur.stale.empty()) {
        Mods m;
        m.put(LDAP_MOD_DELETE, s_.member_attribute(), cur.stale);
        bool empty = cur.members.empty() && cur.placeholders.empty();
        if (empty) m.put(LDAP_MOD_ADD, s_.member_attribute(), {placeholder(cur)});
        int rc = ldap_modify_ext_s(ld_, cur.group_dn.c_str(), m.build(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_ATTRIBUTE)
            return fail(ldap_error("removing stale members of " + cur.group_dn, rc));
        cur.stale.clear();
        if (empty) cur.placeholders.push_back(placeholder(cur));
    }
    if (auto r = refresh_placeholder(cur); !r) return r;
    return set_owners(cur, d.leaders);
}

// An empty group's placeholder member is its own DN (or empty_group_member): after the group was
// renamed or moved, the value still names the old DN and is replaced.
Status LdapTarget::refresh_placeholder(Dept& d) {
    if (d.group_dn.empty() || d.placeholders.empty()) return {};
    const std::string want = placeholder(d);
    bool current = true;
    for (const auto& p : d.placeholders) current = current && ascii_lower(p) == ascii_lower(want);
    if (current) return {};
    bool empty = d.members.empty();
    Mods m;
    m.put(LDAP_MOD_DELETE, s_.member_attribute(), d.placeholders);
    if (empty) m.put(LDAP_MOD_ADD, s_.member_attribute(), {want});
    int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), m.build(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS) return fail(ldap_error("replacing the placeholder member of " + d.group_dn, rc));
    d.placeholders.clear();
    if (empty) d.placeholders.push_back(want);
    return {};
}

Status LdapTarget::put_department(const OrgDepartment& d) {
    std::string parent_dn = s_.departments_dn;
    if (!d.parent_external_id.empty()) {
        auto p = depts_.find(d.parent_external_id);
        if (p == depts_.end() || p->second.dn.empty())
            return fail("parent department " + d.parent_external_id + " is not in the directory");
        parent_dn = p->second.dn;
    }
    if (d.name.empty()) return fail("a department needs a name (its ou)");
    const std::string rdn = "ou=" + ldap_escape_rdn_value(d.name);
    const std::string want = canonical_dn(rdn + "," + parent_dn);
    Dept& cur = depts_[d.external_id];
    std::vector<std::string> desc;
    if (!d.description.empty()) desc.push_back(d.description);
    if (cur.dn.empty()) {
        if (auto r = add_department_entry(d, cur, want, desc); !r) return r;
    } else {
        if (auto r = update_department_entry(cur, rdn, parent_dn, want, desc); !r) return r;
    }
    cur.name = d.name;
    if (!s_.groups()) return {};
    return put_department_group(d, cur);
}

Status LdapTarget::add_member(const std::string& dept_id, const std::string& user_dn) {
    auto it = depts_.find(dept_id);
    if (it == depts_.end() || it->second.group_dn.empty())
        return fail("department " + dept_id + " has no group in the directory");
    Dept& d = it->second;
    std::string l = ascii_lower(user_dn);
    if (d.members.count(l)) return {};
    Mods mods;
    mods.put(LDAP_MOD_ADD, s_.member_attribute(), {user_dn});
    if (!d.placeholders.empty()) mods.put(LDAP_MOD_DELETE, s_.member_attribute(), d.placeholders);
    int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), mods.build(), nullptr, nullptr);
    if (rc == LDAP_TYPE_OR_VALUE_EXISTS || rc == LDAP_NO_SUCH_ATTRIBUTE) {
        // The directory is ahead of our view (an interrupted run): add alone.
        Mods one;
        one.put(LDAP_MOD_ADD, s_.member_attribute(), {user_dn});
        rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), one.build(), nullptr, nullptr);
        if (rc == LDAP_TYPE_OR_VALUE_EXISTS) rc = LDAP_SUCCESS;
    } else if (rc == LDAP_SUCCESS) {
        d.placeholders.clear();
    }
    if (rc != LDAP_SUCCESS) return fail(ldap_error("adding " + user_dn + " to " + d.group_dn, rc));
    d.members.emplace(std::move(l), user_dn);
    return {};
}

Status LdapTarget::remove_member(const std::string& dept_id, const std::string& user_dn) {
    auto it = depts_.find(dept_id);
    if (it == depts_.end() || it->second.group_dn.empty()) return {};
    Dept& d = it->second;
    auto pos = d.members.find(ascii_lower(user_dn));
    if (pos == d.members.end()) return {};
    // groupOfNames requires a member: the last one is replaced by the placeholder in the same operation.
    bool last = d.members.size() == 1 && d.placeholders.empty();
    Mods mods;
    mods.put(LDAP_MOD_DELETE, s_.member_attribute(), {pos->second});
    if (last) mods.put(LDAP_MOD_ADD, s_.member_attribute(), {placeholder(d)});
    int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), mods.build(), nullptr, nullptr);
    if (rc == LDAP_NO_SUCH_ATTRIBUTE || rc == LDAP_TYPE_OR_VALUE_EXISTS) rc = LDAP_SUCCESS;
    if (rc != LDAP_SUCCESS) return fail(ldap_error("removing " + user_dn + " from " + d.group_dn, rc));
    d.members.erase(pos);
    if (last) d.placeholders.push_back(placeholder(d));
    return {};
}

Status LdapTarget::rename_references(const std::string& old_dn, const std::string& new_dn) {
    // No refint overlay is assumed: member, owner and manager values keep the old DN otherwise.
    // An empty `new_dn` removes the values.
    const std::string old_lower = ascii_lower(old_dn);
    const char* member = s_.member_attribute();
    for (auto& [id, d] : depts_) {
        if (d.group_dn.empty()) continue;
        if (auto pos = d.members.find(old_lower); pos != d.members.end() && !new_dn.empty()) {
            Mods m;
            m.put(LDAP_MOD_DELETE, member, {pos->second}).put(LDAP_MOD_ADD, member, {new_dn});
            int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), m.build(), nullptr, nullptr);
            if (rc != LDAP_SUCCESS)
                return fail(ldap_error("rewriting " + std::string(member) + " of " + d.group_dn, rc));
            d.members.erase(pos);
            d.members.emplace(ascii_lower(new_dn), new_dn);
        }
        auto pos = std::find_if(d.owners.begin(), d.owners.end(),
                                [&](const std::string& v) { return ascii_lower(v) == old_lower; });
        if (pos == d.owners.end()) continue;
        // Replaced as a whole, so the leader keeps its place (an added value would go last).
        std::vector<std::string> owners = d.owners;
        if (new_dn.empty())
            owners.erase(owners.begin() + (pos - d.owners.begin()));
        else
            owners[static_cast<std::size_t>(pos - d.owners.begin())] = new_dn;
        Mods m;
        m.put(LDAP_MOD_REPLACE, "owner", owners);
        int rc = ldap_modify_ext_s(ld_, d.group_dn.c_str(), m.build(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS) return fail(ldap_error("rewriting owner of " + d.group_dn, rc));
        d.owners = std::move(owners);
    }
    if (s_.manager_attribute.empty()) return {};
    for (auto& [id, u] : users_) {
        if (ascii_lower(u.manager_dn) != old_lower) continue;
        Mods m;
        m.put(LDAP_MOD_REPLACE, s_.manager_attribute,
              new_dn.empty() ? std::vector<std::string>{} : std::vector<std::string>{new_dn});
        int rc = ldap_modify_ext_s(ld_, u.dn.c_str(), m.build(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS) return fail(ldap_error("rewriting the manager of " + u.dn, rc));
        u.manager_dn = new_dn;
    }
    return {};
}

// The user's group memberships made those of `u`; every change is tried, the first failure returned.
Status LdapTarget::put_memberships(User& cur, const OrgUser& u) {
    std::set<std::string> want_groups;
    for (const auto& m : u.departments) want_groups.insert(m.department);
    Status first_error;  // the first membership change that failed; the others are still tried
    for (auto it = cur.groups.begin(); it != cur.groups.end();) {
        if (want_groups.count(*it)) {
            ++it;
            continue;
        }
        if (auto r = remove_member(*it, cur.dn); !r) {
            if (first_error) first_error = r;
            ++it;
        } else {
            it = cur.groups.erase(it);
        }
    }
    for (const auto& g : want_groups) {
        if (cur.groups.count(g)) continue;
        if (auto r = add_member(g, cur.dn); !r) {
            if (first_error) first_error = r;
        } else {
            cur.groups.insert(g);
        }
    }
    return first_error;
}

Status LdapTarget::put_user(const OrgUser& u) {
    // The DN follows the user as written: normalize() computed it from the desired org, but the
    // plan may write another value (a username cleared by a conflict, or handed over to another
    // user first, filled with the userid by fill_required); references to the user follow it.
    auto known = users_.find(u.external_id);
    const std::string want = user_dn(u);
    // When this write fails, references to the user name the entry as it is (none when it has
    // no active one), and those this run wrote already to `want` are taken back: that DN is not
    // the user's, and may be a stranger's entry.
    auto refer_to_what_is = [&] {
        auto entry = users_.find(u.external_id);
        const std::string is = entry != users_.end() && !entry->second.removed ? entry->second.dn : std::string();
        desired_dn_[u.external_id.str()] = is;
        if (!want.empty() && ascii_lower(want) != ascii_lower(is) && !user_by_dn_.count(ascii_lower(want)))
            (void)rename_references(want, is);  // the write's own error is the one reported
    };
    if (want.empty()) {
        refer_to_what_is();
        return fail("the user has no value for the RDN attribute " + s_.user_rdn_attribute);
    }
    const std::string rdn = first_rdn(want);
    if (auto d = desired_dn_.find(u.external_id); d != desired_dn_.end()) d->second = want;
    std::string manager = u.manager.empty() ? std::string() : user_dn_for(u.manager);

    Mods attrs;  // every mapped attribute, replaced (an empty list removes it)
    for (const auto& a : s_.user_attributes) {
        std::string v = user_value(u, a.field);
        attrs.put(LDAP_MOD_REPLACE, a.attribute, v.empty() ? std::vector<std::string>{} : std::vector<std::string>{v});
    }
    if (!s_.manager_attribute.empty())
        attrs.put(LDAP_MOD_REPLACE, s_.manager_attribute,
                  manager.empty() ? std::vector<std::string>{} : std::vector<std::string>{manager});

    bool modify = true;
    if (known == users_.end()) {
        Mods add;
        add.put(LDAP_MOD_ADD, "objectClass", {"top", "person", "organizationalPerson", "inetOrgPerson"})
            .put(LDAP_MOD_ADD, s_.user_id_attribute, {u.external_id});
        for (const auto& a : s_.user_attributes)
            if (auto v = user_value(u, a.field); !v.empty()) add.put(LDAP_MOD_ADD, a.attribute, {v});
        if (!manager.empty()) add.put(LDAP_MOD_ADD, s_.manager_attribute, {manager});
        int rc = ldap_add_ext_s(ld_, want.c_str(), add.build(), nullptr, nullptr);
        if (rc == LDAP_ALREADY_EXISTS) {
            std::string owner;
            (void)paged_search(ld_, want, LDAP_SCOPE_BASE, "(objectClass=*)", {s_.user_id_attribute.c_str()}, 1,
                               [&](LDAPMessage* e) { owner = first_value(ld_, e, s_.user_id_attribute.c_str()); });
            if (owner != u.external_id) {
                refer_to_what_is();
                return fail(want + " already exists and is not user " + u.external_id + " (" + s_.user_id_attribute +
                            ": " + (owner.empty() ? "none" : owner) + ")");
            }
        } else if (rc != LDAP_SUCCESS) {
            refer_to_what_is();
            return fail(ldap_error("adding " + want, rc));
        } else {
            modify = false;
        }
        known = users_.emplace(u.external_id, User{want, false, {}, manager}).first;
        user_by_dn_[ascii_lower(want)] = u.external_id;
    } else if (needs_rename(known->second.dn, want)) {
        User& cur = known->second;
        bool move = ascii_lower(parent_of(cur.dn)) != ascii_lower(s_.users_dn);
        int rc =
            ldap_rename_s(ld_, cur.dn.c_str(), rdn.c_str(), move ? s_.users_dn.c_str() : nullptr, 1, nullptr, nullptr);
        if (rc != LDAP_SUCCESS) {
            refer_to_what_is();
            return fail(ldap_error((move ? "moving " : "renaming ") + cur.dn + " to " + want, rc));
        }
        const std::string old = cur.dn;
        user_by_dn_.erase(ascii_lower(old));
        user_by_dn_[ascii_lower(want)] = u.external_id;
        cur.dn = want;
        cur.removed = false;
        if (auto r = rename_references(old, want); !r) return r;
    }
    User& cur = known->second;
    if (modify) {
        int rc = ldap_modify_ext_s(ld_, cur.dn.c_str(), attrs.build(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS) return fail(ldap_error("updating " + cur.dn, rc));
        cur.manager_dn = manager;
    }
    return put_memberships(cur, u);
}

Status LdapTarget::disable_user(const std::string& id, const OrgUser* /*kept*/) {
    auto it = users_.find(id);
    if (it == users_.end() || it->second.removed) return {};
    User& cur = it->second;
    for (auto g = cur.groups.begin(); g != cur.groups.end();) {
        if (auto r = remove_member(*g, cur.dn); !r) return r;
        g = cur.groups.erase(g);
    }
    // Its RDN as it is; when a user disabled earlier holds that one (a username left and given
    // to another user, who left too), its value with the DingTalk id: the RDN stays unique, and
    // the entry never stays active in users_dn without its groups.
    std::string rdn = first_rdn(cur.dn);
    int rc = ldap_rename_s(ld_, cur.dn.c_str(), rdn.c_str(), s_.removed_users_dn.c_str(), 1, nullptr, nullptr);
    if (rc == LDAP_ALREADY_EXISTS) {
        rdn = s_.user_rdn_attribute + "=" + ldap_escape_rdn_value(rdn_value(cur.dn) + " (" + id + ")");
        rc = ldap_rename_s(ld_, cur.dn.c_str(), rdn.c_str(), s_.removed_users_dn.c_str(), 1, nullptr, nullptr);
    }
    if (rc != LDAP_SUCCESS) return fail(ldap_error("moving " + cur.dn + " to " + s_.removed_users_dn, rc));
    const std::string want = canonical_dn(rdn + "," + s_.removed_users_dn);
    user_by_dn_.erase(ascii_lower(cur.dn));
    user_by_dn_[ascii_lower(want)] = id;
    cur.dn = want;
    cur.removed = true;
    return {};
}

Status LdapTarget::delete_user(const std::string& id) {
    auto it = users_.find(id);
    if (it == users_.end()) return {};
    User& cur = it->second;
    for (auto g = cur.groups.begin(); g != cur.groups.end();) {
        if (auto r = remove_member(*g, cur.dn); !r) return r;
        g = cur.groups.erase(g);
    }
    int rc = ldap_delete_ext_s(ld_, cur.dn.c_str(), nullptr, nullptr);
    if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) return fail(ldap_error("deleting " + cur.dn, rc));
    user_by_dn_.erase(ascii_lower(cur.dn));
    users_.erase(it);
    return {};
}

Status LdapTarget::delete_department(const std::string& id) {
    auto it = depts_.find(id);
    if (it == depts_.end()) return {};
    Dept& d = it->second;
    if (!d.group_dn.empty()) {
        int rc = ldap_delete_ext_s(ld_, d.group_dn.c_str(), nullptr, nullptr);
        if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT)
            return fail(ldap_error("deleting the group " + d.group_dn, rc));
        d.group_dn.clear();
        for (auto& [uid, u] : users_) u.groups.erase(id);
    }
    if (!d.dn.empty()) {
        int rc = ldap_delete_ext_s(ld_, d.dn.c_str(), nullptr, nullptr);
        if (rc == LDAP_NOT_ALLOWED_ON_NONLEAF)
            return fail(d.dn + " still holds entries dingbridge does not manage; move or delete them first");
        if (rc != LDAP_SUCCESS && rc != LDAP_NO_SUCH_OBJECT) return fail(ldap_error("deleting " + d.dn, rc));
    }
    depts_.erase(it);
    return {};
}

}  // namespace dingbridge::agent
