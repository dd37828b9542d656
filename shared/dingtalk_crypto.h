#pragma once
// DingTalk HTTP-push callback crypto (dingtalk-api.md §5): the SHA-1 signature over the sorted
// (token, timestamp, nonce, encrypt) strings, and AES-256-CBC with key = base64(aes_key + "="),
// IV = key[0:16], plaintext = random16 + uint32_be(len) + msg + ownerKey, PKCS#7 padded to 32.
// Pure functions over values (OpenSSL EVP inside); safe from any thread. Decrypt never trusts
// its input: every length is checked and failures come back as an error string.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "shared/base64.h"

namespace dingbridge::dingtalk_crypto {

// Lowercase hex SHA-1 of the lexicographically sorted concatenation.
std::string signature(std::string_view token, std::string_view timestamp, std::string_view nonce,
                      std::string_view encrypt);

// aes_key is the 43-character console key. random16 must be 16 bytes (tests pass a fixed one;
// empty = generate). Returns base64 ciphertext, or nullopt when the key is malformed.
std::optional<std::string> encrypt(std::string_view aes_key, std::string_view owner_key, std::string_view msg,
                                   std::string_view random16 = {});

// Returns the message, or nullopt with error set (bad key, base64, padding, length, ownerKey).
std::optional<std::string> decrypt(std::string_view aes_key, std::string_view encrypt_b64,
                                   std::string_view expected_owner_key, std::string& error);

bool valid_aes_key(std::string_view aes_key);
std::string random_alnum(size_t n);
// Lower-case hex of a digest (signatures, dedup keys).
std::string hex_lower(const unsigned char* data, std::size_t n);
using dingbridge::base64_decode;  // shared/base64.h
using dingbridge::base64_encode;

}  // namespace dingbridge::dingtalk_crypto
