#include "agent/targets/scim_check.h"

#include <simdjson.h>

#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/targets/scim_client.h"
#include "agent/targets/scim_target.h"

namespace dingbridge::agent {

namespace {

namespace dom = simdjson::dom;

// The ids (or names) of a ListResponse's resources, with the schema extensions of each.
bool list_ids(const std::string& body, std::set<std::string>& ids, std::set<std::string>& extensions) {
    dom::parser p;
    dom::element doc;
    dom::array list;
    if (p.parse(body).get(doc) || doc["Resources"].get(list)) {
        dom::array plain;  // some servers answer a bare array
        if (p.parse(body).get(doc) || doc.get(plain)) return false;
        list = plain;
    }
    for (dom::element e : list) {
        std::string_view v;
        if (!e["id"].get(v)) ids.insert(std::string(v));
        if (!e["name"].get(v)) ids.insert(std::string(v));
        dom::array ext;
        if (!e["schemaExtensions"].get(ext))
            for (dom::element x : ext)
                if (!x["schema"].get(v)) extensions.insert(std::string(v));
    }
    return true;
}

bool has_attribute(const std::string& body, const std::string& schema, const std::string& attribute) {
    dom::parser p;
    dom::element doc;
    dom::array list;
    if (p.parse(body).get(doc) || doc["Resources"].get(list)) return false;
    for (dom::element e : list) {
        std::string_view id, name;
        if (e["id"].get(id) || id != schema) continue;
        dom::array attrs;
        if (e["attributes"].get(attrs)) return false;
        for (dom::element a : attrs)
            if (!a["name"].get(name) && name == attribute) return true;
    }
    return false;
}

bool first_step(ScimClient& client, const ScimSettings& s, std::ostream& out) {
    auto r = client.send({"GET", "/ServiceProviderConfig", ""});
    bool https = s.base_url.rfind("https://", 0) == 0;
    if (r.status == 0) {
        out << "scim " << (r.tls_error ? "TLS" : "connect") << ": FAIL: " << r.network_error << "\n  "
            << (r.tls_error ? "does target.scim.ca_file hold the CA that signed the server's certificate, and does "
                              "the certificate name the URL's host?"
                            : "is the server running and target.scim.base_url right?")
            << "\n";
        return false;
    }
    out << "scim connect: ok\n";
    if (https) out << "scim TLS: ok (certificate verified)\n";
    if (r.status == 401 || r.status == 403) {
        out << "scim token: FAIL: " << r.error("GET /ServiceProviderConfig") << "\n  check target.scim.token\n";
        return false;
    }
    bool patch = false;
    dom::parser p;
    dom::element doc;
    if (!r.ok() || p.parse(r.body).get(doc)) {
        out << "scim service provider config: FAIL: " << r.error("GET /ServiceProviderConfig")
            << "\n  is target.scim.base_url the SCIM base (e.g. https://host/scim/v2)?\n";
        return false;
    }
    dom::element sp;
    if (doc["patch"].get(sp) == simdjson::SUCCESS && sp["supported"].get(patch) != simdjson::SUCCESS) patch = false;
    out << "scim service provider config: ok (PATCH " << (patch ? "supported" : "not supported: updates by PUT")
        << ")\n";
    return true;
}

bool check_steps(const ScimSettings& settings, std::ostream& out) {
    ScimSettings s = settings;
    s.max_attempts = 2;
    s.backoff_base = std::chrono::milliseconds(200);
    ScimClient client(s);
    out << "scim: " << s.base_url << "\n";
    if (!first_step(client, s, out)) return false;
    auto users = client.send({"GET", "/Users?startIndex=1&count=1", ""});
    if (!users.ok()) {
        out << "scim token: FAIL: " << users.error("GET /Users") << "\n  "
            << (users.status == 401 || users.status == 403 ? "check target.scim.token (and its permissions)"
                                                           : "the server does not list Users")
            << "\n";
        return false;
    }
    out << "scim token: ok (accepted)\n";
    std::set<std::string> types, extensions;
    auto rt = client.send({"GET", "/ResourceTypes", ""});
    if (!rt.ok() || !list_ids(rt.body, types, extensions) || !types.count("User") || !types.count("Group")) {
        out << "scim resource types: FAIL: " << (rt.ok() ? "User and Group are needed" : rt.error("GET /ResourceTypes"))
            << "\n";
        return false;
    }
    out << "scim resource types: ok (User, Group)\n";
    std::set<std::string> schemas, unused;
    auto sc = client.send({"GET", "/Schemas", ""});
    if (!sc.ok() || !list_ids(sc.body, schemas, unused)) {
        out << "scim schemas: FAIL: " << sc.error("GET /Schemas") << "\n";
        return false;
    }
    std::vector<std::string> missing;
    for (std::string want : {kScimUserSchema, kScimGroupSchema, kScimEnterpriseSchema, s.department_schema.c_str()})
        if (!schemas.count(want)) missing.push_back("schema " + want);
    for (std::string want : {kScimEnterpriseSchema, s.department_schema.c_str()})
        if (!extensions.count(want)) missing.push_back("resource type extension " + want);
    if (missing.empty() && !has_attribute(sc.body, s.department_schema, s.parent_attribute))
        missing.push_back("attribute " + s.parent_attribute + " in " + s.department_schema);
    if (missing.empty() && !has_attribute(sc.body, s.department_schema, s.leaders_attribute))
        missing.push_back("attribute " + s.leaders_attribute + " in " + s.department_schema);
    if (!missing.empty()) {
        out << "scim schemas: FAIL: the server has no ";
        for (std::size_t i = 0; i < missing.size(); ++i) out << (i ? ", " : "") << missing[i];
        out << "\n  declare them on the server, or set target.scim.department_schema/parent_attribute/"
               "leaders_attribute to the extension it has for the parent department and leaders\n";
        return false;
    }
    out << "scim schemas: ok (User + enterprise extension, Group + " << s.department_schema << ")\n";
    return true;
}

}  // namespace

bool check_scim_online(const ScimSettings& s, std::ostream& out) {
    // The server's error details are printed: scrubbed of the token, should a server echo it.
    std::ostringstream text;
    bool ok = check_steps(s, text);
    out << redact(text.str(), {s.token});
    return ok;
}

}  // namespace dingbridge::agent
