// match-key: prints directory_match_key of each line of standard input, one line each
// (tests/integration/slapd_names.py asks a real slapd the same question).
#include <iostream>
#include <string>

#include "shared/match_key.h"

int main() {
    std::string line;
    while (std::getline(std::cin, line)) std::cout << dingbridge::directory_match_key(line) << '\n';
}
