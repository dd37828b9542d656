#pragma once
// The identity org schema: the target-neutral model the agent syncs (ARCHITECTURE.md,
// "Identity org schema"). Plain values keyed by external_id (DingTalk dept_id / userid);
// equality is field by field, which is what the diff uses to decide "update or not".
// Structural fields (parents, memberships, leaders, manager) are filled by the sync from
// DingTalk's tree; the mapping computes the rest.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/org/small_string.h"

namespace dingbridge::agent {

struct OrgDepartment {
    std::string external_id;
    std::string name;
    std::string parent_external_id;  // empty for the root
    std::int64_t order = 0;
    std::vector<std::string> leaders;  // user external ids
    std::string description;
    std::map<std::string, std::string> custom;

    friend bool operator==(const OrgDepartment&, const OrgDepartment&) = default;
};

// A user's place in one department: DingTalk's per-department order and leader flag.
struct Membership {
    SmallString department;  // external id
    std::int64_t order = 0;
    bool leader = false;

    friend bool operator==(const Membership&, const Membership&) = default;
};

// A user's custom fields (mapping.yaml `custom.<key>`), a map allocated only when the user has
// any. Most users have none, and an empty std::map is 48 bytes (100,000 users: 4.6 MiB of a first
// sync's peak). Reads see an empty map when there is none; equality treats none as empty.
class CustomFields {
public:
    using Map = std::map<std::string, std::string>;

    CustomFields() = default;
    CustomFields(std::initializer_list<Map::value_type> init) {
        if (init.size()) m_ = std::make_unique<Map>(init);
    }
    CustomFields(const CustomFields& o) : m_(o.empty() ? nullptr : std::make_unique<Map>(*o.m_)) {}
    CustomFields(CustomFields&&) noexcept = default;
    CustomFields& operator=(const CustomFields& o) {
        if (this != &o) m_ = o.empty() ? nullptr : std::make_unique<Map>(*o.m_);
        return *this;
    }
    CustomFields& operator=(CustomFields&&) noexcept = default;
    CustomFields& operator=(Map m) {
        m_ = m.empty() ? nullptr : std::make_unique<Map>(std::move(m));
        return *this;
    }

    const Map& map() const { return m_ ? *m_ : none(); }
    operator const Map&() const { return map(); }  // NOLINT(google-explicit-constructor)

    std::string& operator[](const std::string& key) {
        if (!m_) m_ = std::make_unique<Map>();
        return (*m_)[key];
    }
    bool empty() const { return !m_ || m_->empty(); }
    std::size_t size() const { return m_ ? m_->size() : 0; }
    std::size_t count(const std::string& key) const { return m_ ? m_->count(key) : 0; }
    const std::string& at(const std::string& key) const { return map().at(key); }
    Map::const_iterator find(const std::string& key) const { return map().find(key); }
    Map::const_iterator begin() const { return map().begin(); }
    Map::const_iterator end() const { return map().end(); }
    Map::iterator begin() { return m_ ? m_->begin() : none().begin(); }
    Map::iterator end() { return m_ ? m_->end() : none().end(); }
    Map::iterator erase(Map::iterator it) { return m_->erase(it); }  // `it` of this map: never end()
    void clear() { m_.reset(); }

    friend bool operator==(const CustomFields& a, const CustomFields& b) { return a.map() == b.map(); }

private:
    // Stands in for a missing map: never modified (nothing can be erased from or added to it
    // through an iterator of an empty map), so its iterators compare as one map's.
    static Map& none() {
        static Map empty;
        return empty;
    }
    std::unique_ptr<Map> m_;
};

struct OrgUser {
    SmallString external_id;
    SmallString union_id;
    SmallString username;
    SmallString display_name;
    SmallString email;
    SmallString phone;
    SmallString employee_number;
    SmallString title;
    std::vector<Membership> departments;  // primary first
    SmallString primary_department;
    SmallString manager;
    SmallString avatar_url;
    SmallString hired_at;  // YYYY-MM-DD or empty
    CustomFields custom;
    bool active = true;

    friend bool operator==(const OrgUser&, const OrgUser&) = default;
};

// The text fields of a user by the name mapping.yaml and the targets' attribute maps use.
inline constexpr std::pair<std::string_view, SmallString OrgUser::*> kUserTextFields[] = {
    {"union_id", &OrgUser::union_id},
    {"username", &OrgUser::username},
    {"display_name", &OrgUser::display_name},
    {"email", &OrgUser::email},
    {"phone", &OrgUser::phone},
    {"employee_number", &OrgUser::employee_number},
    {"title", &OrgUser::title},
    {"primary_department", &OrgUser::primary_department},
    {"avatar_url", &OrgUser::avatar_url},
    {"hired_at", &OrgUser::hired_at},
};

// The text field of `u` called `name` (kUserTextFields), or nullptr.
inline const SmallString* user_text_field(const OrgUser& u, std::string_view name) {
    for (const auto& [key, member] : kUserTextFields)
        if (key == name) return &(u.*member);
    return nullptr;
}
inline SmallString* user_text_field(OrgUser& u, std::string_view name) {
    return const_cast<SmallString*>(user_text_field(static_cast<const OrgUser&>(u), name));
}

// One side of a diff: everything a target holds, or everything fetched and mapped.
struct OrgSnapshot {
    std::map<std::string, OrgDepartment> departments;
    std::map<std::string, OrgUser> users;
    // Users the target keeps but marked removed (disabled by an earlier sync): external id ->
    // removal time (Unix seconds). Such users are not in `users`.
    std::map<std::string, std::int64_t> removed_users;
    // The rows of those removed users as the target holds them (unique values, memberships left
    // by older versions), keyed like removed_users. The plan needs them: a removed row still holds
    // its username/email/phone and must release a value an active user takes (re-hire, recycled
    // phone). A target that keeps no values for removed users leaves it empty.
    std::map<std::string, OrgUser> removed_user_rows;
    // Active users whose row the target holds exactly as the desired org has them, when the
    // target was read against it (Target::read_against): only their ids are kept, sorted, and
    // their rows are not in `users`. A no-op resync of a large org then holds one copy of each
    // user instead of two. Empty after a plain read().
    std::vector<std::string> users_as_desired;

    bool user_as_desired(const std::string& id) const {
        return std::binary_search(users_as_desired.begin(), users_as_desired.end(), id);
    }
    // Active users, with those kept only as ids.
    std::size_t user_count() const { return users.size() + users_as_desired.size(); }
};

// Whether the target's active row `row` is exactly the desired org's user of the same id.
inline bool row_as_desired(const OrgSnapshot& desired, const OrgUser& row) {
    auto d = desired.users.find(row.external_id);
    return d != desired.users.end() && d->second == row;
}

// Moves every active user of `current` whose row equals `desired`'s to current.users_as_desired.
inline void keep_equal_users_as_ids(OrgSnapshot& current, const OrgSnapshot& desired) {
    for (auto it = current.users.begin(); it != current.users.end();) {
        if (row_as_desired(desired, it->second)) {
            current.users_as_desired.push_back(it->first);
            it = current.users.erase(it);
        } else {
            ++it;
        }
    }
    std::sort(current.users_as_desired.begin(), current.users_as_desired.end());
}

}  // namespace dingbridge::agent
