#include "shared/dingtalk_crypto.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

namespace dingbridge::dingtalk_crypto {

namespace {
constexpr size_t kBlock = 32;  // DingTalk pads to 32 bytes, not the AES block size (§5)

struct CtxFree {
    void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};

std::optional<std::string> key_bytes(std::string_view aes_key) {
    if (!valid_aes_key(aes_key)) return std::nullopt;
    auto k = base64_decode(std::string(aes_key) + "=");
    if (!k || k->size() != 32) return std::nullopt;
    return k;
}

// AES-256-CBC without OpenSSL's own padding (DingTalk's 32-byte PKCS#7 is done by hand).
std::optional<std::string> aes(bool enc, const std::string& key, std::string_view in) {
    if (in.size() % 16 != 0) return std::nullopt;
    std::unique_ptr<EVP_CIPHER_CTX, CtxFree> ctx(EVP_CIPHER_CTX_new());
    if (!ctx) return std::nullopt;
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_CipherInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, k, k, enc ? 1 : 0) != 1) return std::nullopt;
    EVP_CIPHER_CTX_set_padding(ctx.get(), 0);
    std::string out(in.size() + 32, '\0');
    int n1 = 0, n2 = 0;
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    if (EVP_CipherUpdate(ctx.get(), o, &n1, reinterpret_cast<const unsigned char*>(in.data()),
                         static_cast<int>(in.size())) != 1)
        return std::nullopt;
    if (EVP_CipherFinal_ex(ctx.get(), o + n1, &n2) != 1) return std::nullopt;
    out.resize(static_cast<size_t>(n1 + n2));
    return out;
}
}  // namespace

bool valid_aes_key(std::string_view k) {
    return k.size() == 43 && std::all_of(k.begin(), k.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
           });
}

std::string random_alnum(size_t n) {
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    std::vector<unsigned char> r(n);
    if (RAND_bytes(r.data(), static_cast<int>(n)) != 1) std::fill(r.begin(), r.end(), 7);
    std::string s;
    for (auto b : r) s.push_back(k[b % 62]);
    return s;
}

std::string signature(std::string_view token, std::string_view timestamp, std::string_view nonce,
                      std::string_view encrypt) {
    std::array<std::string_view, 4> parts{token, timestamp, nonce, encrypt};
    std::sort(parts.begin(), parts.end());
    std::string joined;
    for (auto p : parts) joined += p;
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(joined.data()), joined.size(), md);
    return hex_lower(md, sizeof md);
}

std::string hex_lower(const unsigned char* data, std::size_t n) {
    static const char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(hex[data[i] >> 4]);
        out.push_back(hex[data[i] & 15]);
    }
    return out;
}

std::optional<std::string> encrypt(std::string_view aes_key, std::string_view owner_key, std::string_view msg,
                                   std::string_view random16) {
    auto key = key_bytes(aes_key);
    if (!key) return std::nullopt;
    std::string plain = random16.size() == 16 ? std::string(random16) : random_alnum(16);
    uint32_t len = static_cast<uint32_t>(msg.size());
    plain.push_back(static_cast<char>(len >> 24));
    plain.push_back(static_cast<char>(len >> 16));
    plain.push_back(static_cast<char>(len >> 8));
    plain.push_back(static_cast<char>(len));
    plain += msg;
    plain += owner_key;
    size_t pad = kBlock - plain.size() % kBlock;  // 1..32
    plain.append(pad, static_cast<char>(pad));
    auto ct = aes(true, *key, plain);
    if (!ct) return std::nullopt;
    return base64_encode(*ct);
}

std::optional<std::string> decrypt(std::string_view aes_key, std::string_view encrypt_b64,
                                   std::string_view expected_owner_key, std::string& error) {
    auto key = key_bytes(aes_key);
    if (!key) {
        error = "aes_key must be 43 characters of [A-Za-z0-9]";
        return std::nullopt;
    }
    auto ct = base64_decode(encrypt_b64);
    if (!ct || ct->empty() || ct->size() % 16 != 0) {
        error = "encrypt is not base64 of whole AES blocks";
        return std::nullopt;
    }
    auto plain = aes(false, *key, *ct);
    if (!plain || plain->empty()) {
        error = "AES decryption failed";
        return std::nullopt;
    }
    auto pad = static_cast<unsigned char>(plain->back());
    if (pad < 1 || pad > kBlock || pad > plain->size()) {
        error = "bad padding";
        return std::nullopt;
    }
    plain->resize(plain->size() - pad);
    if (plain->size() < 20) {
        error = "plaintext too short";
        return std::nullopt;
    }
    const auto* p = reinterpret_cast<const unsigned char*>(plain->data());
    size_t len = (size_t(p[16]) << 24) | (size_t(p[17]) << 16) | (size_t(p[18]) << 8) | size_t(p[19]);
    if (len > plain->size() - 20) {
        error = "message length exceeds plaintext";
        return std::nullopt;
    }
    std::string msg = plain->substr(20, len);
    std::string_view owner = std::string_view(*plain).substr(20 + len);
    if (owner != expected_owner_key) {
        error = "ownerKey mismatch (计算解密文字corpid不匹配)";
        return std::nullopt;
    }
    return msg;
}

}  // namespace dingbridge::dingtalk_crypto
