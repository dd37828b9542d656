#include "agent/host_check.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

namespace fs = std::filesystem;

namespace dingbridge::agent {
namespace {

std::string who() {
    uid_t uid = geteuid();
    const passwd* pw = getpwuid(uid);
    return std::string("user ") + (pw ? pw->pw_name : "?") + " (uid " + std::to_string(uid) + ")";
}

std::string prefix(const AgentConfig& c, const std::string& key, const std::string& path) {
    return fs::path(c.file).filename().string() + ": " + key + ": " + path + ": ";
}

void check_ca(const AgentConfig& c, const std::string& key, const std::string& path, std::vector<std::string>& out) {
    if (path.empty()) return;
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(path.c_str(), "r"), BIO_free);
    if (!bio) {
        int err = errno;
        ERR_clear_error();
        out.push_back(prefix(c, key, path) + "cannot be read by " + who() + ": " + std::strerror(err));
        return;
    }
    int certs = 0;
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
        X509_free(x);
        ++certs;
    }
    // The loop ends with "no start line" at the end of the file; only a broken block matters.
    unsigned long e = ERR_peek_last_error();
    bool broken = e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE;
    ERR_clear_error();
    if (broken)
        out.push_back(prefix(c, key, path) + "a PEM block in it does not parse as a certificate (" +
                      std::to_string(certs) + " read before it)");
    else if (certs == 0)
        out.push_back(prefix(c, key, path) + "holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
}

// A directory that the agent will create when missing: the nearest existing parent must be writable.
void check_dir(const AgentConfig& c, const std::string& key, const fs::path& dir, std::vector<std::string>& out) {
    std::error_code ec;
    fs::path p = dir;
    while (!p.empty() && !fs::exists(p, ec)) {
        if (p == p.parent_path()) break;
        p = p.parent_path();
    }
    if (!fs::is_directory(p, ec)) {
        out.push_back(prefix(c, key, dir.string()) + p.string() + " is not a directory");
        return;
    }
    if (access(p.c_str(), W_OK | X_OK) != 0) {
        int err = errno;
        std::string what =
            p == dir ? "is not writable by " : "cannot be created: " + p.string() + " is not writable by ";
        out.push_back(prefix(c, key, dir.string()) + what + who() + ": " + std::strerror(err));
    }
}

void check_file(const AgentConfig& c, const std::string& key, const fs::path& file, std::vector<std::string>& out) {
    std::error_code ec;
    if (!fs::exists(file, ec)) return;
    if (access(file.c_str(), R_OK | W_OK) != 0) {
        int err = errno;
        struct stat st {};
        std::string owner;
        if (stat(file.c_str(), &st) == 0) {
            const passwd* pw = getpwuid(st.st_uid);
            owner = std::string(" (owned by ") + (pw ? pw->pw_name : std::to_string(st.st_uid)) + ")";
        }
        out.push_back(prefix(c, key, file.string()) + "is not writable by " + who() + owner + ": " +
                      std::strerror(err));
    }
}

}  // namespace

std::vector<std::string> check_writable(const AgentConfig& c) {
    std::vector<std::string> out;
    fs::path state(c.state_dir);
    check_dir(c, "state_dir", state, out);
    if (out.empty()) {
        for (const char* name : {"state.db", "state.db-wal", "state.db-shm", "agent.lock"})
            check_file(c, "state_dir", state / name, out);
    }
    fs::path target(c.target_path);
    if (target.parent_path() != state) check_dir(c, "target.path", target.parent_path(), out);
    for (const char* suffix : {"", "-wal", "-shm"}) check_file(c, "target.path", c.target_path + suffix, out);
    return out;
}

std::vector<std::string> check_host(const AgentConfig& c) {
    std::vector<std::string> out;
    check_ca(c, "dingtalk.ca_file", c.client.transport.ca_file, out);
    check_ca(c, "proxy.ca_file", c.client.transport.proxy_ca_file, out);
    auto w = check_writable(c);
    out.insert(out.end(), w.begin(), w.end());
    return out;
}

std::optional<std::string> root_on_service_state(const AgentConfig& c) {
    if (geteuid() != 0) return std::nullopt;
    struct stat st {};
    if (stat(c.state_dir.c_str(), &st) != 0 || st.st_uid == 0) return std::nullopt;
    const passwd* pw = getpwuid(st.st_uid);
    std::string user = pw ? pw->pw_name : std::to_string(st.st_uid);
    return "state_dir " + c.state_dir + " belongs to " + user + "; running as root would leave files there that " +
           user + " cannot write. Run as that user: runuser -u " + user + " -- dingbridge-agent ...";
}

}  // namespace dingbridge::agent
