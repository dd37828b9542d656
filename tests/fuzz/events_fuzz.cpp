// libFuzzer target: what reaches the agent's run mode from the network. The HTTP push receiver
// parses the query string and the JSON body of anyone's request before the signature proves it
// comes from DingTalk; after it, the decrypted event; the stream client parses DingTalk's frames.
// Any input may be refused, none may crash, hang or read outside its buffer. Build: cmake
// -DCMAKE_CXX_COMPILER=clang++ -DDINGBRIDGE_FUZZ=ON, target events_fuzz.
//
// Input: one mode byte, then two parts separated by the first NUL.
//   mode 0: an unsigned request: POST /dingtalk/events?<part 1> with body <part 2>;
//   mode 1: a correctly signed request whose encrypted message is <part 1> (the fuzzer reaches
//           the decrypted event's parser), with the query parameter spelling from <part 2>'s size;
//   any mode: both parts also go to the stream frame and the event payload parsers.
#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "agent/events/event_parse.h"
#include "agent/events/journal.h"
#include "agent/events/push.h"
#include "shared/dingtalk_crypto.h"

namespace {

using namespace dingbridge::agent::events;
namespace crypto = dingbridge::dingtalk_crypto;

constexpr std::string_view kToken = "fuzzToken123";
constexpr std::string_view kAesKey = "Qw3rTy7uIoP1aSdFgHjKl9zXcVbNm2QwErTy5uIoP8a";  // 43 characters
constexpr std::string_view kOwner = "dingfuzzappkey";

PushReceiver& receiver() {
    static PushReceiver r = [] {
        spdlog::set_level(spdlog::level::off);  // refusals are logged; a flood of them is noise here
        PushSettings s;
        s.path = "/dingtalk/events";
        s.token = std::string(kToken);
        s.aes_key = std::string(kAesKey);
        s.owner_key = std::string(kOwner);
        return PushReceiver(s, [](JournalEvent&& e) { return !e.dedup_key.empty(); });
    }();
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::size_t nul = input.find('\0');
    const std::string_view first = input.substr(0, nul);
    const std::string_view second = nul == std::string_view::npos ? std::string_view{} : input.substr(nul + 1);

    HttpRequestView req;
    req.method = "POST";
    if (data[0] % 2 == 0) {
        req.target = "/dingtalk/events?" + std::string(first);
        req.body = std::string(second);
    } else {
        auto enc = crypto::encrypt(kAesKey, kOwner, first, "0123456789abcdef");
        if (!enc) return 0;
        const std::string ts = std::to_string(now_ms());
        const std::string nonce = "fuzzNonce";
        const bool short_names = second.size() % 2 == 1;
        req.target = std::string("/dingtalk/events?") + (short_names ? "signature=" : "msg_signature=") +
                     crypto::signature(kToken, ts, nonce, *enc) + (short_names ? "&timestamp=" : "&timeStamp=") + ts +
                     "&nonce=" + nonce;
        req.body = "{\"encrypt\":\"" + *enc + "\"}";
    }
    const HttpReply reply = receiver().handle(req);
    // A push signed and encrypted with the right keys is answered 200 whatever it carries (an
    // event it cannot use is acknowledged and left to the reconcile): anything else means this
    // target no longer gets past the signature, and fuzzes less than it claims.
    if (data[0] % 2 == 1 && reply.status != 200) __builtin_trap();

    std::string error;
    (void)parse_stream_frame(first, error);
    JournalEvent e;
    (void)parse_event_payload(first, e, error);
    (void)parse_event_payload(second, e, error);
    return 0;
}
