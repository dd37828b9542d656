#include "agent/targets/ldap_check.h"

#include <ldap.h>

#include <set>
#include <string>
#include <vector>

#include "agent/targets/ldap_target.h"
#include "shared/ascii.h"

namespace dingbridge::agent {

namespace {

// Reads a base entry's attribute values; returns an LDAP result code.
int read_entry(LDAP* ld, const std::string& dn, const char* filter, const std::vector<const char*>& attrs,
               std::vector<std::vector<std::string>>& values) {
    std::vector<char*> list;
    for (const char* a : attrs) list.push_back(const_cast<char*>(a));
    list.push_back(nullptr);
    LDAPMessage* res = nullptr;
    int rc =
        ldap_search_ext_s(ld, dn.c_str(), LDAP_SCOPE_BASE, filter, list.data(), 0, nullptr, nullptr, nullptr, 1, &res);
    values.assign(attrs.size(), {});
    if (rc == LDAP_SUCCESS) {
        LDAPMessage* e = ldap_first_entry(ld, res);
        if (!e) rc = LDAP_NO_SUCH_OBJECT;
        for (std::size_t i = 0; e && i < attrs.size(); ++i) {
            if (berval** v = ldap_get_values_len(ld, e, attrs[i])) {
                for (int j = 0; v[j]; ++j) values[i].emplace_back(v[j]->bv_val, v[j]->bv_len);
                ldap_value_free_len(v);
            }
        }
    }
    if (res) ldap_msgfree(res);
    return rc;
}

// Names declared by schema descriptions: "( 2.5.6.5 NAME 'organizationalUnit' ..." or
// "NAME ( 'cn' 'commonName' )".
std::set<std::string> schema_names(const std::vector<std::string>& descriptions) {
    std::set<std::string> names;
    for (const auto& d : descriptions) {
        auto p = d.find(" NAME ");
        if (p == std::string::npos) continue;
        p += 6;
        bool list = p < d.size() && d[p] == '(';
        auto end = list ? d.find(')', p) : d.find(' ', d.find('\'', p) + 1);
        std::string part = d.substr(p, end == std::string::npos ? std::string::npos : end - p);
        for (std::size_t q = part.find('\''); q != std::string::npos; q = part.find('\'', q)) {
            auto close = part.find('\'', q + 1);
            if (close == std::string::npos) break;
            names.insert(ascii_lower(part.substr(q + 1, close - q - 1)));
            q = close + 1;
        }
    }
    return names;
}

}  // namespace

bool check_ldap_online(const LdapSettings& s, std::ostream& out) {
    out << "ldap: " << s.url << " as " << s.bind_dn << "\n";
    std::string step, error;
    LdapHandle ld = ldap_open_session(s, step, error);
    if (!ld) {
        const char* hint = step == "connect" ? "is the server running and the host/port in target.ldap.url right?"
                           : step == "TLS"   ? "does target.ldap.ca_file hold the CA that signed the server's "
                                               "certificate, and does the certificate name the URL's host?"
                                             : "check target.ldap.bind_dn and bind_password";
        out << "ldap " << step << ": FAIL: " << error << "\n  " << hint << "\n";
        return false;
    }
    out << "ldap connect: ok\nldap TLS: ok (" << (s.url.rfind("ldaps://", 0) == 0 ? "ldaps" : "StartTLS")
        << ", certificate verified)\nldap bind: ok\n";

    std::vector<std::vector<std::string>> values;
    int rc = read_entry(ld.get(), s.base_dn, "(objectClass=*)", {"objectClass"}, values);
    if (rc != LDAP_SUCCESS) {
        out << "ldap base DN: FAIL: " << s.base_dn << ": " << ldap_err2string(rc)
            << "\n  create it, or fix target.ldap.base_dn (the bind DN must be able to read it)\n";
        return false;
    }
    out << "ldap base DN: ok (" << s.base_dn << ")\n";

    // The schema: object classes written and every attribute of the mapping.
    std::vector<std::vector<std::string>> subschema;
    rc = read_entry(ld.get(), "", "(objectClass=*)", {"subschemaSubentry"}, subschema);
    std::string schema_dn = rc == LDAP_SUCCESS && !subschema[0].empty() ? subschema[0][0] : "cn=Subschema";
    rc = read_entry(ld.get(), schema_dn, "(objectClass=subschema)", {"objectClasses", "attributeTypes"}, values);
    if (rc != LDAP_SUCCESS) {
        out << "ldap schema: FAIL: cannot read " << schema_dn << ": " << ldap_err2string(rc) << "\n";
        return false;
    }
    auto classes = schema_names(values[0]);
    auto attributes = schema_names(values[1]);
    std::vector<std::string> missing;
    std::vector<std::string> want_classes = {"organizationalUnit", "inetOrgPerson"};
    if (s.groups()) want_classes.push_back(s.group_class);
    for (const auto& c : want_classes)
        if (!classes.count(ascii_lower(c))) missing.push_back("object class " + c);
    std::vector<std::string> want_attrs = {s.department_id_attribute, s.user_id_attribute, "ou", "description"};
    if (!s.manager_attribute.empty()) want_attrs.push_back(s.manager_attribute);
    if (s.groups()) want_attrs.insert(want_attrs.end(), {s.member_attribute(), "owner", "cn"});
    for (const auto& a : s.user_attributes) want_attrs.push_back(a.attribute);
    for (const auto& a : want_attrs)
        if (!attributes.count(ascii_lower(a))) missing.push_back("attribute " + a);
    if (!missing.empty()) {
        out << "ldap schema: FAIL: the server's schema has no ";
        for (std::size_t i = 0; i < missing.size(); ++i) out << (i ? ", " : "") << missing[i];
        out << "\n  load the schema (core, cosine, inetorgperson) or change target.ldap's attributes\n";
        return false;
    }
    out << "ldap schema: ok (" << want_classes.size() << " object classes, " << want_attrs.size() << " attributes)\n";
    return true;
}

}  // namespace dingbridge::agent
