#pragma once
// How a directory compares names that ignore case (LDAP's caseIgnoreMatch after RFC 4518's string
// preparation, SCIM's caseExact false), as one key per name: two names with equal keys are one
// name there. Covered: case of ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic letters;
// full-width ASCII forms (ＩＴ is IT, NFKC); every space character (U+00A0, U+3000, U+2000-200A,
// ...) as a space, with leading and trailing spaces dropped and runs inside made one; code points
// mapped to nothing (soft hyphen, zero-width space and joiners, variation selectors, BOM).
// Not covered (they would need Unicode's tables): other scripts' case, decomposed accents
// (e + U+0301 against é) and compatibility forms other than full-width ASCII. Bytes that are not
// UTF-8 are kept as they are. Pure; any thread.

#include <string>
#include <string_view>

namespace dingbridge {

std::string directory_match_key(std::string_view name);

}  // namespace dingbridge
