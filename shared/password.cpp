#include "shared/password.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

#include "shared/base64.h"

namespace dingbridge {

namespace {

constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kHashBytes = 32;

std::optional<std::string> derive(const std::string& password, const std::string& salt, const ScryptParams& p) {
    std::string out(kHashBytes, '\0');
    const std::uint64_t n = 1ULL << p.log2_n;
    const std::uint64_t maxmem = 128ULL * n * static_cast<std::uint64_t>(p.r) * 2 + (1 << 20);
    if (EVP_PBE_scrypt(password.data(), password.size(), reinterpret_cast<const unsigned char*>(salt.data()),
                       salt.size(), n, static_cast<std::uint64_t>(p.r), static_cast<std::uint64_t>(p.p), maxmem,
                       reinterpret_cast<unsigned char*>(out.data()), out.size()) != 1) {
        return std::nullopt;
    }
    return out;
}

bool parse_int(const std::string& s, int& out, int min, int max) {
    if (s.empty() || s.size() > 3) return false;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    if (v < min || v > max) return false;
    out = v;
    return true;
}

}  // namespace

std::optional<PasswordHash> PasswordHash::parse(const std::string& text, std::string* error) {
    auto bad = [&](const char* why) {
        if (error) *error = why;
        return std::nullopt;
    };
    // $scrypt$ln=15,r=8,p=1$salt$hash
    const std::string prefix = "$scrypt$";
    if (text.rfind(prefix, 0) != 0) {
        return bad("not a password hash (expected $scrypt$...; create one with `dingbridge-proxy hash-password`)");
    }
    std::vector<std::string> parts;
    std::size_t start = prefix.size();
    while (true) {
        std::size_t d = text.find('$', start);
        parts.push_back(text.substr(start, d == std::string::npos ? std::string::npos : d - start));
        if (d == std::string::npos) break;
        start = d + 1;
    }
    if (parts.size() != 3) return bad("malformed $scrypt$ hash (expected $scrypt$ln=..,r=..,p=..$salt$hash)");
    PasswordHash h;
    std::size_t pos = 0;
    const std::string& params = parts[0];
    int seen = 0;
    while (pos <= params.size()) {
        std::size_t comma = params.find(',', pos);
        const std::string kv = params.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        const std::size_t eq = kv.find('=');
        if (eq == std::string::npos) return bad("malformed scrypt parameters");
        const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
        if (k == "ln" && parse_int(v, h.params_.log2_n, 10, 20))
            seen |= 1;
        else if (k == "r" && parse_int(v, h.params_.r, 1, 32))
            seen |= 2;
        else if (k == "p" && parse_int(v, h.params_.p, 1, 16))
            seen |= 4;
        else
            return bad("unsupported scrypt parameter (ln 10..20, r 1..32, p 1..16)");
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (seen != 7) return bad("scrypt parameters ln, r and p are all required");
    auto salt = base64_decode(parts[1]);
    auto hash = base64_decode(parts[2]);
    if (!salt || salt->size() < 8) return bad("invalid salt in scrypt hash");
    if (!hash || hash->size() != kHashBytes) return bad("invalid digest in scrypt hash");
    h.salt_ = *salt;
    h.hash_ = *hash;
    return h;
}

PasswordHash PasswordHash::create(const std::string& password, const ScryptParams& params) {
    PasswordHash h;
    h.params_ = params;
    h.salt_.assign(kSaltBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(h.salt_.data()), static_cast<int>(kSaltBytes)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    auto derived = derive(password, h.salt_, params);
    if (!derived) throw std::runtime_error("scrypt failed");
    h.hash_ = *derived;
    return h;
}

PasswordHash PasswordHash::decoy(const ScryptParams& params) {
    PasswordHash h;
    h.params_ = params;
    h.salt_.assign(kSaltBytes, '\0');
    h.hash_.assign(kHashBytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(h.salt_.data()), static_cast<int>(kSaltBytes)) != 1 ||
        RAND_bytes(reinterpret_cast<unsigned char*>(h.hash_.data()), static_cast<int>(kHashBytes)) != 1) {
        throw std::runtime_error("RAND_bytes failed");
    }
    return h;
}

bool PasswordHash::verify(const std::string& password) const {
    auto derived = derive(password, salt_, params_);
    return derived && derived->size() == hash_.size() &&
           CRYPTO_memcmp(derived->data(), hash_.data(), hash_.size()) == 0;
}

std::string PasswordHash::to_string() const {
    return "$scrypt$ln=" + std::to_string(params_.log2_n) + ",r=" + std::to_string(params_.r) +
           ",p=" + std::to_string(params_.p) + "$" + base64_encode(salt_) + "$" + base64_encode(hash_);
}

}  // namespace dingbridge
