#pragma once
// Target: where the identity org is written (ARCHITECTURE.md, "Targets"). One interface for
// the embedded SQLite directory and, later, SCIM: read the current state, then apply a plan's
// changes one by one inside a run. `begin()`/`commit()` bracket a run; `apply()` isolates one
// change so that a failure is returned (and recorded by the caller) without undoing the others.
// Not thread-safe.

#include <optional>
#include <string>

#include "agent/org/plan.h"
#include "agent/org/schema.h"

namespace dingbridge::agent {

class Target {
public:
    virtual ~Target() = default;
    // Current state; nullopt + error on failure.
    virtual std::optional<OrgSnapshot> read(std::string& error) = 0;
    virtual bool begin(std::string& error) = 0;
    // Applies one change; returns an error message, or nullopt on success.
    virtual std::optional<std::string> apply(const Change& change) = 0;
    virtual bool commit(std::string& error) = 0;
    virtual void rollback() = 0;
};

}  // namespace dingbridge::agent
