#pragma once
// Target: where the identity org is written (ARCHITECTURE.md, "Targets"). One interface for
// the embedded SQLite directory and, later, SCIM: read the current state, then apply a plan's
// changes one by one inside a run. `begin()`/`commit()` bracket a run; `apply()` isolates one
// change so that a failure is returned (and recorded by the caller) without undoing the others.
// Not thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "agent/org/plan.h"
#include "agent/org/schema.h"

namespace dingbridge::agent {

class Target {
public:
    virtual ~Target() = default;
    // Drops from the desired org what this target cannot hold (e.g. an LDAP directory has no
    // department order), so that the diff against read() plans nothing when nothing changed.
    // Called once per run with the full desired org, before the plan is made.
    virtual void normalize(OrgSnapshot& desired) { (void)desired; }
    // Current state; nullopt + error on failure.
    virtual std::optional<OrgSnapshot> read(std::string& error) = 0;
    virtual bool begin(std::string& error) = 0;
    // Applies one change; returns an error message, or nullopt on success.
    virtual std::optional<std::string> apply(const Change& change) = 0;
    // Applies changes[0..n) in order with exactly the outcome of calling apply() on each:
    // errors[i] is set for a change that failed, and only that change is undone. A target may
    // group the changes to save per-change overhead, falling back to one by one on a failure.
    virtual void apply_batch(const Change* changes, std::size_t n, std::vector<std::optional<std::string>>& errors) {
        errors.assign(n, std::nullopt);
        for (std::size_t i = 0; i < n; ++i) errors[i] = apply(changes[i]);
    }
    virtual bool commit(std::string& error) = 0;
    virtual void rollback() = 0;
};

}  // namespace dingbridge::agent
