#pragma once
// How an LDAP directory compares names that ignore case, as one key per name: two names with equal keys
// are one name there, as slapd's caseIgnoreMatch has them (RFC 4518's preparation as OpenLDAP does
// it, probed): folding more than the directory costs a needless rename, folding less a write
// refused on every run. Capital letters in lower case (the simple one-to-one mapping: ß stays ß,
// final sigma stays ς), then NFKC (ＩＴ is IT, ① is 1, ｶﾞ is ガ, e + U+0301 is é, the Ohm sign is
// ω); the space separators a space, none at either end, runs inside made one (tabs, NEL and the
// line separator are kept, as slapd keeps them, and so are the soft hyphen and zero-width space). Unicode's tables come
// from utf8proc (Unicode 15); slapd's are older. Of 9,000 pairs probed against slapd 2.5
// (tests/integration/slapd_names.py), none it holds equal has two keys; 2,230 it tells apart have one (letters added to
// Unicode since, mathematical alphanumerics, CJK compatibility ideographs): a needless " (id)", never a failed write.
// Bytes that are not UTF-8 are kept as they are (ASCII letters in lower case). Pure; any thread.

#include <string>
#include <string_view>

namespace dingbridge {

std::string directory_match_key(std::string_view name);

// How a SCIM service may compare userName (caseExact false; RFC 7643 leaves how to each service):
// folded further than any of them is likely to, so that no userName is sent that the service
// holds as another's (409 on every run): full case folding (ß is ss, ς is σ, İ is i + U+0307, as
// a JavaScript toLowerCase or a .NET OrdinalIgnoreCase service may take them), NFKC, and every
// white space character a space, none at either end, runs made one. Two names this holds as one
// and the service as two cost a needless conflict (the later user's userid as its userName).
std::string scim_match_key(std::string_view name);

// `text` in lower (`upper`: upper) case, as the mapping's lower and upper filters write values:
// Unicode's one-to-one mappings (Ü is ü), and as Python's and JavaScript's lower() and upper() do
// İ is i + U+0307, Σ at the end of a word ς, ß in upper case SS. A byte that is not UTF-8 is kept
// (an ASCII letter in the case asked). Pure; any thread.
void change_case(std::string& text, bool upper);

}  // namespace dingbridge
