#pragma once
// Salted, slow password hashes for proxy users and console users (scrypt from OpenSSL, RFC 7914).
//
// Stored form: `$scrypt$ln=15,r=8,p=1$<salt base64>$<hash base64>`. Verification recomputes
// the hash with the stored parameters and compares in constant time (CRYPTO_memcmp). Pure
// functions; thread-safe.

#include <cstdint>
#include <optional>
#include <string>

namespace dingbridge {

struct ScryptParams {
    int log2_n = 15;  // N = 32768: ~32 MiB and tens of ms per hash
    int r = 8;
    int p = 1;

    // The work of one hash (time grows with N * r * p, memory with N * r).
    std::uint64_t cost() const { return (std::uint64_t{1} << log2_n) * static_cast<std::uint64_t>(r * p); }
};

class PasswordHash {
public:
    // Parses the stored form; nullopt (with `error`) if it is not a supported hash.
    static std::optional<PasswordHash> parse(const std::string& text, std::string* error);
    static PasswordHash create(const std::string& password, const ScryptParams& params = {});
    // A hash no password matches (random salt and digest) whose `verify` costs what a real one
    // with `params` costs: the check run for unknown user names. Computes no scrypt.
    static PasswordHash decoy(const ScryptParams& params);

    const ScryptParams& params() const { return params_; }

    bool verify(const std::string& password) const;
    std::string to_string() const;

private:
    ScryptParams params_;
    std::string salt_;
    std::string hash_;
};

}  // namespace dingbridge
